"""CrossEncoder: sentence-transformers' CrossEncoder.predict()/rank() on an ONNX sequence-classification graph.

The graph takes the tokenized (text, text) pair and returns `logits` of shape (batch, num_labels) (the export
of a `...ForSequenceClassification` model). Activation functions are plain NumPy callables here; the ones
sentence-transformers stores by name (`torch.nn.modules.activation.Sigmoid`, ...) are mapped to NumPy
equivalents without importing torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lightembed.config import max_seq_length_from, read_json, read_model_settings
from lightembed.inputs import (
    check_batch_size,
    merge_prompts,
    pop_legacy,
    reject_multiprocess,
    resolve_prompt,
    take_sentences,
)
from lightembed.loading import check_device, load
from lightembed.progress import progress
from lightembed.tokenize import Tokenizer

logger = logging.getLogger(__name__)

__all__ = ["CrossEncoder", "Sigmoid", "Identity", "Tanh", "ReLU", "Softmax"]


# ----- activation functions (NumPy) -------------------------------------------------------------------
class _Activation:
    """A NumPy activation applied to the (batch, num_labels) logits; `torch_name` is what config files store."""

    torch_name = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed in float64 so it neither overflows nor loses tiny probabilities."""

    torch_name = "torch.nn.modules.activation.Sigmoid"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-x64))).astype(np.float32)


class Identity(_Activation):
    torch_name = "torch.nn.modules.linear.Identity"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x


class Tanh(_Activation):
    torch_name = "torch.nn.modules.activation.Tanh"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


class ReLU(_Activation):
    torch_name = "torch.nn.modules.activation.ReLU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


class Softmax(_Activation):
    """Softmax over the label axis (torch.nn.Softmax() with its implicit dim picks axis 1 for 2-D logits)."""

    torch_name = "torch.nn.modules.activation.Softmax"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _softmax(x)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


_BY_NAME: dict[str, type[_Activation]] = {}
for _cls in (Sigmoid, Identity, Tanh, ReLU, Softmax):
    _BY_NAME[_cls.torch_name] = _cls
    _BY_NAME[f"torch.nn.{_cls.__name__}"] = _cls
    _BY_NAME[_cls.__name__.lower()] = _cls
# torch functions (not modules) people pass as activation_fn
_BY_NAME.update(
    {
        "torch.sigmoid": Sigmoid,
        "torch.tanh": Tanh,
        "torch.relu": ReLU,
        "torch.nn.functional.sigmoid": Sigmoid,
        "torch.nn.functional.tanh": Tanh,
        "torch.nn.functional.relu": ReLU,
        "torch.nn.functional.softmax": Softmax,
        "torch.softmax": Softmax,
    }
)


def _fullname(obj: Any) -> str:
    """Dotted name of a class or function, or of an instance's class."""
    if not (hasattr(obj, "__qualname__") and hasattr(obj, "__module__")):
        obj = type(obj)
    return f"{obj.__module__ or ''}.{obj.__qualname__}".lstrip(".")


def _activation_from_path(path: str, trust_remote_code: bool) -> _Activation | None:
    """The NumPy activation for a dotted path stored in a config, or None (with a warning) if untrusted."""
    cls = _BY_NAME.get(path)
    if cls is not None:
        return cls()
    if not path.startswith("torch.") and not trust_remote_code:
        logger.warning(
            "Activation function path %r is not trusted, using the default activation function instead. "
            "Load the CrossEncoder with trust_remote_code=True to allow custom activation functions.",
            path,
        )
        return None
    raise ValueError(
        f"The model's config names the activation function {path!r}, which lightembed has no NumPy version of "
        f"(it has {sorted(c.torch_name for c in set(_BY_NAME.values()))}). Pass activation_fn=<a callable on "
        "NumPy arrays> to CrossEncoder(...) or predict(...)."
    )


def as_activation(fn: Any, trust_remote_code: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """Turn what a user passes as activation_fn into a callable on NumPy arrays.

    Accepts a NumPy callable, a dotted torch name ("torch.nn.Sigmoid"), or a torch module/function instance
    (`torch.nn.Sigmoid()`, `torch.sigmoid`): those are recognised by name and replaced by NumPy versions, so
    torch is never called.
    """
    if isinstance(fn, _Activation):
        return fn
    if isinstance(fn, str):
        resolved = _activation_from_path(fn, trust_remote_code)
        if resolved is None:
            raise ValueError(f"Unknown activation function {fn!r}.")
        return resolved
    if not callable(fn):
        raise TypeError(f"activation_fn must be callable, got {type(fn).__name__}.")
    name = _fullname(fn)
    if name.split(".")[0] == "torch":
        cls = _BY_NAME.get(name) or _BY_NAME.get(f"torch.nn.{type(fn).__name__}")
        if cls is None:
            raise ValueError(
                f"activation_fn {name} is a torch function lightembed cannot run without torch; pass a callable on "
                "NumPy arrays instead (e.g. lightembed.cross_encoder.Sigmoid())."
            )
        return cls()
    return fn


# ----- config ------------------------------------------------------------------------------------------
class ModelConfig(dict):
    """config.json as a dict that also allows attribute access (`model.config.id2label`), like transformers'.

    `id2label` keys are ints, as transformers makes them.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no attribute {name!r}") from None


def _read_model_config(folder: Path) -> ModelConfig:
    data = read_json(folder / "config.json")
    id2label = data.get("id2label")
    if isinstance(id2label, dict):
        try:
            data["id2label"] = {int(k): v for k, v in id2label.items()}
        except ValueError:
            pass
    return ModelConfig(data)


# ----- inputs ------------------------------------------------------------------------------------------
def _check_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise TypeError(f"{where} is None; every pair needs two strings.")
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{where} is {type(value).__name__}; decode it to str first (e.g. .decode('utf-8')).")
    if isinstance(value, np.str_):
        return str(value)
    raise TypeError(f"{where} must be a string, got {type(value).__name__}.")


def _check_pair(pair: Any, where: str) -> tuple[str, str]:
    if isinstance(pair, np.ndarray):
        pair = pair.tolist()
    if isinstance(pair, str):
        raise TypeError(
            f"{where} is a single string; a CrossEncoder scores (text, text) pairs: pass [(query, document), ...]."
        )
    if not isinstance(pair, (list, tuple)):
        kind = "None" if pair is None else type(pair).__name__
        raise TypeError(f"{where} must be a (text, text) pair, got {kind}.")
    if len(pair) != 2:
        raise ValueError(
            f"{where} has {len(pair)} items; a pair must have exactly 2 texts. "
            "To score several pairs, pass a list of pairs: [(query, doc1), (query, doc2), ...]."
        )
    return _check_text(pair[0], f"{where}[0]"), _check_text(pair[1], f"{where}[1]")


def as_pairs(inputs: Any) -> tuple[list[tuple[str, str]], bool]:
    """(pairs, was_single_pair) with sentence-transformers' rule: a list/tuple whose first item is not itself a
    list/tuple is one pair; otherwise it is a batch of pairs. Errors name the offending index."""
    if inputs is None:
        raise TypeError("inputs must be a (text, text) pair or a list of pairs, got None.")
    if isinstance(inputs, (str, bytes, bytearray)):
        raise TypeError(
            f"inputs is a single {type(inputs).__name__}; a CrossEncoder scores (text, text) pairs: "
            "pass (query, document) or [(query, document), ...]."
        )
    if isinstance(inputs, dict):
        raise TypeError("inputs must be a (text, text) pair or a list of pairs, got a dict.")
    if isinstance(inputs, np.ndarray):
        if inputs.size == 0:
            return [], False
        if inputs.ndim == 1:
            return [_check_pair(inputs.tolist(), "inputs")], True
        inputs = inputs.tolist()
    elif not isinstance(inputs, (list, tuple)):
        try:
            inputs = list(inputs)
        except TypeError:
            raise TypeError(
                f"inputs must be a (text, text) pair or a list of pairs, got {type(inputs).__name__}."
            ) from None
        if inputs and not isinstance(inputs[0], (list, tuple, np.ndarray)):
            raise TypeError(f"inputs[0] must be a (text, text) pair, got {type(inputs[0]).__name__}.")
    if len(inputs) > 0 and not isinstance(inputs[0], (list, tuple, np.ndarray)):
        return [_check_pair(inputs, "inputs")], True
    return [_check_pair(pair, f"inputs[{i}]") for i, pair in enumerate(inputs)], False


_IGNORED_INIT = ("classifier_dropout", "model_card_data", "modules")


class CrossEncoder:
    """Scores (text, text) pairs with a cross-encoder exported to ONNX, with sentence-transformers' API.

    `model_name_or_path` is a local folder or a Hugging Face Hub repo id holding config.json, tokenizer.json and
    an ONNX file (`onnx/model.onnx` or `model.onnx` unless `file_name` picks another) whose output `logits` has
    shape (batch, num_labels). `device`, `providers`, `threads` work as for `SentenceTransformer`.

    The positional order after the model name is sentence-transformers' historical one
    (num_labels, max_length, activation_fn, device); everything else is keyword-only.

    `activation_fn` (here, at predict() or from the model's config) is a callable on a float32 NumPy array of
    shape (batch, num_labels). Names sentence-transformers stores ("torch.nn.modules.activation.Sigmoid", ...)
    and torch activation instances passed by users are mapped to NumPy versions (`Sigmoid`, `Identity`, `Tanh`,
    `ReLU`, `Softmax` in this module). The default is Sigmoid for one label and Identity for several, unless the
    model's config says otherwise.
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = None,
        device: str | None = None,
        *,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        file_name: str | None = None,
        revision: str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: str = "onnx",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> None:
        model_name_or_path = pop_legacy(kwargs, model_name_or_path, "model_name")
        activation_fn = pop_legacy(kwargs, activation_fn, "default_activation_function")
        cache_folder = pop_legacy(kwargs, cache_folder, "cache_dir")
        model_kwargs = pop_legacy(kwargs, model_kwargs, "automodel_args")
        processor_kwargs = pop_legacy(kwargs, processor_kwargs, "tokenizer_args", "tokenizer_kwargs")
        config_kwargs = pop_legacy(kwargs, config_kwargs, "config_args")
        for key in _IGNORED_INIT:
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"CrossEncoder() got unexpected keyword arguments: {sorted(kwargs)}.")
        if num_labels is None and config_kwargs and config_kwargs.get("num_labels") is not None:
            num_labels = config_kwargs["num_labels"]
        if max_length is None and processor_kwargs and processor_kwargs.get("model_max_length") is not None:
            max_length = processor_kwargs["model_max_length"]
        if model_name_or_path is None:
            raise TypeError("CrossEncoder() needs model_name_or_path: a folder or Hugging Face Hub repo id.")
        bad_labels = isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1
        if num_labels is not None and bad_labels:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}.")

        loaded = load(
            model_name_or_path,
            device=device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            preferred_outputs=("logits", "scores"),
        )
        self.model_dir, self.onnx_path, self._graph = loaded.model_dir, loaded.onnx_path, loaded.graph
        self.providers, self.device = loaded.providers, loaded.device
        self.trust_remote_code = trust_remote_code
        self.config = _read_model_config(self.model_dir)
        st_config = read_json(self.model_dir / "sentence_bert_config.json")
        task = st_config.get("transformer_task")
        if task not in (None, "sequence-classification"):
            raise ValueError(
                f"{self.model_dir} is a {task!r} model (sentence_bert_config.json), not a cross-encoder "
                "(sequence-classification)."
            )
        out = next(o for o in self._graph.session.get_outputs() if o.name == self._graph.output_name)
        if out.shape is not None and len(out.shape) != 2:
            raise ValueError(
                f"The ONNX graph's output {out.name!r} has shape {out.shape}; a CrossEncoder needs (batch, num_labels) "
                "logits from a sequence-classification export. Is this an embedding model? Use SentenceTransformer."
            )
        self._num_labels = self._find_num_labels(num_labels)

        self.tokenizer_wrapper = Tokenizer.from_dir(
            self.model_dir,
            max_length if max_length is not None else max_seq_length_from(self.model_dir, st_config),
            bool(st_config.get("do_lower_case", False)),
        )

        configured, configured_default, _ = read_model_settings(self.model_dir)
        self.prompts, self.default_prompt_name = merge_prompts(
            configured, configured_default, prompts, default_prompt_name
        )

        if activation_fn is not None:
            self.activation_fn = as_activation(activation_fn)
        else:
            self.activation_fn = self._configured_activation(
                read_json(self.model_dir / "config_sentence_transformers.json")
            )

    def _find_num_labels(self, requested: int | None) -> int:
        width = self._graph.output_width
        configured = self.config.get("num_labels")
        if configured is None and isinstance(self.config.get("id2label"), dict):
            configured = len(self.config["id2label"])
        if width is not None:
            if requested is not None and requested != width:
                raise ValueError(
                    f"num_labels={requested} was requested, but the ONNX graph outputs {width} label(s); an exported "
                    "classification head cannot be resized."
                )
            return int(width)
        return int(requested or configured or 1)

    def _configured_activation(self, model_config: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """sentence-transformers' lookup: config_sentence_transformers.json, then config.json's
        "sentence_transformers" block, then the legacy "sbert_ce_default_activation_function", then the default."""
        candidates = [model_config.get("activation_fn")]
        st_block = self.config.get("sentence_transformers")
        if isinstance(st_block, dict) and "activation_fn" in st_block:
            candidates.append(st_block["activation_fn"])
        else:
            candidates.append(self.config.get("sbert_ce_default_activation_function"))
        for path in candidates:
            if isinstance(path, str) and path:
                resolved = _activation_from_path(path, self.trust_remote_code)
                if resolved is not None:
                    return resolved
        return Sigmoid() if self.num_labels == 1 else Identity()

    def get_default_activation_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """The activation the model's config asks for (Sigmoid for one label, Identity for several by default)."""
        return self._configured_activation(read_json(self.model_dir / "config_sentence_transformers.json"))

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def num_labels(self) -> int:
        return self._num_labels

    @property
    def max_seq_length(self) -> int | None:
        """Pairs longer than this many tokens (special tokens included) are truncated, longest text first."""
        return self.tokenizer_wrapper.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self.tokenizer_wrapper.max_length = value

    @property
    def max_length(self) -> int | None:
        """Alias of max_seq_length (the name sentence-transformers < 5 used)."""
        return self.max_seq_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self.max_seq_length = value

    @property
    def default_activation_function(self) -> Callable[[np.ndarray], np.ndarray]:
        return self.activation_fn

    @property
    def tokenizer(self) -> Any:
        """The underlying `tokenizers.Tokenizer`."""
        return self.tokenizer_wrapper.backend

    def get_max_seq_length(self) -> int | None:
        return self.max_seq_length

    # ----- prediction -------------------------------------------------------------------------------
    def predict(
        self,
        inputs: Any = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Score one (text, text) pair or a list of pairs.

        A single pair gives a NumPy float32 scalar for a one-label model and a (num_labels,) array otherwise; a
        list of n pairs gives (n,) or (n, num_labels), in input order. The activation (argument, else the model's)
        is applied to the logits, then softmax over labels if `apply_softmax`. There is no torch here:
        `convert_to_tensor=True` also returns a NumPy array, and `convert_to_numpy=False` a list of NumPy scores.
        """
        inputs = take_sentences(inputs, kwargs)
        activation_fn = pop_legacy(kwargs, activation_fn, "activation_fct")
        kwargs.pop("num_workers", None)
        if kwargs.get("task") is None:
            kwargs.pop("task", None)
        if kwargs:
            raise ValueError(f"predict() got keyword arguments it does not use: {sorted(kwargs)}.")
        reject_multiprocess(device, pool, chunk_size, "predict()")
        check_device(device, self.device, type(self).__name__)
        pairs, single = as_pairs(inputs)
        batch_size = check_batch_size(batch_size)
        activation = as_activation(activation_fn) if activation_fn is not None else self.activation_fn
        resolved = resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)
        if resolved:
            pairs = [(resolved + a, b) for a, b in pairs]

        num_labels = self.num_labels
        scores = np.zeros((len(pairs), num_labels), dtype=np.float32)
        batches = progress(
            self.tokenizer_wrapper.batches(pairs, batch_size), bool(show_progress_bar), "Batches",
            total=-(-len(pairs) // batch_size),
        )
        for idx, batch in batches:
            logits = self._graph(batch.as_dict())
            if logits.ndim != 2 or logits.shape[1] != num_labels:
                raise ValueError(
                    f"The ONNX graph returned logits of shape {logits.shape}; expected (batch, {num_labels})."
                )
            out = np.asarray(activation(logits), dtype=np.float32)
            if out.shape != logits.shape:
                raise ValueError(f"activation_fn changed the shape of the logits from {logits.shape} to {out.shape}.")
            if apply_softmax:
                # As sentence-transformers: softmax over the label axis whenever the scores are 2-D, which for a
                # one-label model turns every score into 1.0.
                out = _softmax(out, axis=1)
            scores[idx] = out

        result = scores[:, 0] if num_labels == 1 else scores
        if single:
            return result[0]
        if convert_to_tensor or convert_to_numpy:
            return result
        return list(result)

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Score `query` against each document; a list of {"corpus_id", "score"[, "text"]} dicts, best first.

        Only for one-label models. `top_k` keeps the best k (None: all); ties keep corpus order.
        """
        activation_fn = pop_legacy(kwargs, activation_fn, "activation_fct")
        kwargs.pop("num_workers", None)
        if kwargs:
            raise ValueError(f"rank() got keyword arguments it does not use: {sorted(kwargs)}.")
        if self.num_labels != 1:
            raise ValueError(
                f"CrossEncoder.rank() only works for models with num_labels=1; this model has {self.num_labels}. "
                "Use CrossEncoder.predict() with (query, document) pairs instead."
            )
        query = _check_text(query, "query")
        if documents is None or isinstance(documents, (str, bytes, bytearray)):
            raise TypeError(
                f"documents must be a list of strings, got {'None' if documents is None else type(documents).__name__}."
            )
        if hasattr(documents, "tolist") and not isinstance(documents, (list, tuple)):
            documents = documents.tolist()
        documents = list(documents)
        for i, doc in enumerate(documents):
            _check_text(doc, f"documents[{i}]")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise TypeError(f"top_k must be an integer or None, got {type(top_k).__name__}.")
        if not documents:
            return []
        scores = self.predict(
            [(query, doc) for doc in documents],
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            apply_softmax=apply_softmax,
            convert_to_numpy=convert_to_numpy,
            convert_to_tensor=convert_to_tensor,
            device=device,
            pool=pool,
            chunk_size=chunk_size,
        )
        results = []
        for i, score in enumerate(scores):
            entry: dict[str, Any] = {"corpus_id": i, "score": score}
            if return_documents:
                entry["text"] = documents[i]
            results.append(entry)
        results.sort(key=lambda r: r["score"], reverse=True)  # stable: ties keep corpus order
        return results[:top_k]

    def tokenize(self, pairs: Any) -> dict[str, np.ndarray]:
        """Token arrays for (text, text) pairs, padded to the longest: input_ids, attention_mask, token_type_ids."""
        pairs, _ = as_pairs(pairs)
        return self.tokenizer_wrapper(pairs).as_dict()

    def __repr__(self) -> str:
        if not hasattr(self, "activation_fn"):  # failed or unfinished __init__
            return "CrossEncoder(<not loaded>)"
        return (
            f"CrossEncoder(path={str(self.model_dir)!r}, onnx={self.onnx_path.name!r}, num_labels={self.num_labels}, "
            f"max_length={self.max_seq_length}, activation_fn={self.activation_fn!r}, "
            f"providers={self._graph.session.get_providers()})"
        )

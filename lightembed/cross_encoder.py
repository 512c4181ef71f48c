"""CrossEncoder: sentence-transformers' CrossEncoder.predict()/rank() on an ONNX sequence-classification graph.

The graph takes the tokenized (text, text) pair and returns `logits` of shape (batch, num_labels) (the export
of a `...ForSequenceClassification` model). Activation functions are plain NumPy callables here; the ones
sentence-transformers stores by name (`torch.nn.modules.activation.Sigmoid`, ...) are mapped to NumPy
equivalents without importing torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, overload

import numpy as np
from tokenizers import Encoding

from lightembed import activations, llm_reranker
from lightembed.activations import Identity, ReLU, Sigmoid, Softmax, Tanh, as_activation, softmax
from lightembed.base import BaseModel, ModelSetup
from lightembed.config import HFConfig, read_json, read_model_settings, read_transformer_settings
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.inputs import as_pairs, check_batch_size, check_int, check_text, pop_legacy, take_sentences
from lightembed.llm_reranker import CausalReranker, SystemPair
from lightembed.tokenize import Batch, TextInput
from lightembed.unsupported import torch_only

__all__ = ["CrossEncoder", "Sigmoid", "Identity", "Tanh", "ReLU", "Softmax", "as_activation"]


_IGNORED_INIT = ("classifier_dropout", "model_card_data", "modules")


class CrossEncoder(BaseModel):
    """Scores (text, text) pairs with a cross-encoder exported to ONNX, with sentence-transformers' API.

    `model_name_or_path` is a local folder or a Hugging Face Hub repo id holding config.json, tokenizer.json and
    an ONNX file (`onnx/model.onnx` or `model.onnx` unless `file_name` picks another) whose output `logits` has
    shape (batch, num_labels). `device`, `providers`, `threads`, `max_batch_tokens` and `verify` work as for
    `SentenceTransformer`.

    The positional order after the model name is sentence-transformers' historical one
    (num_labels, max_length, activation_fn, device); everything else is keyword-only.

    `activation_fn` (here, at predict() or from the model's config) is a callable on a float32 NumPy array of
    shape (batch, num_labels). Names sentence-transformers stores ("torch.nn.modules.activation.Sigmoid", ...)
    and torch activation instances passed by users are mapped to NumPy versions (`lightembed.activations`).
    The default is Sigmoid for one label and Identity for several, unless the model's config says otherwise.

    A causal-LM reranker (sentence-transformers 6's Transformer + LogitScore: Qwen3-Reranker, bge-reranker-v2-gemma,
    mxbai-rerank-v2) scores with the LogitScore formula on the last-token logits its graph outputs; pairs are
    written with its chat template as sentence-transformers writes them (lightembed.llm_reranker).
    """

    _preferred_outputs = ("logits", "scores")
    _default_similarity = None

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
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        preoptimized: bool | None = None,
        spinning: bool | None = None,
        keep_in_fp32_modules: list[str] | None = None,
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
            raise LightembedTypeError(f"CrossEncoder() got unexpected keyword arguments: {sorted(kwargs)}.")
        if num_labels is None and config_kwargs and config_kwargs.get("num_labels") is not None:
            num_labels = config_kwargs["num_labels"]
        if max_length is None and processor_kwargs and processor_kwargs.get("model_max_length") is not None:
            max_length = processor_kwargs["model_max_length"]
        if model_name_or_path is None:
            raise LightembedTypeError("CrossEncoder() needs model_name_or_path: a folder or Hugging Face Hub repo id.")
        if num_labels is not None:
            try:
                num_labels = check_int(num_labels, "num_labels")
            except ValueError:
                raise LightembedValueError(f"num_labels must be a positive integer, got {num_labels!r}.") from None
        self._requested_labels = num_labels
        self.trust_remote_code = trust_remote_code
        self._causal: CausalReranker | None = None
        self.keep_in_fp32_modules: list[str] | None = None
        """sentence-transformers 6's fp32-under-autocast layers: none in an ONNX graph (see set_keep_in_fp32_modules)."""
        self.set_keep_in_fp32_modules(keep_in_fp32_modules or [])
        super().__init__(
            model_name_or_path,
            device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            max_seq_length=max_length,
            max_batch_tokens=max_batch_tokens,
            verify=verify,
            preoptimized=preoptimized,
            spinning=spinning,
        )
        if self._causal is not None:
            self._causal.configure(self.tokenizer_wrapper)
        if activation_fn is not None:
            self.activation_fn = as_activation(activation_fn)
        else:
            self.activation_fn = self.get_default_activation_fn()

    def _setup(self) -> ModelSetup:
        self.config = HFConfig.read(self.model_dir)
        self._causal = llm_reranker.read(self.model_dir)
        causal = self._causal
        settings = read_transformer_settings(
            self.model_dir, chat_template=causal is not None and causal.template is not None
        )
        task = "text-generation" if causal is not None else "sequence-classification"
        if settings.transformer_task not in (None, task):
            raise LightembedValueError(
                f"{self.model_dir} is a {settings.transformer_task!r} model (sentence_bert_config.json), not a "
                f"cross-encoder ({task})."
            )
        prompts, default_prompt_name, _ = read_model_settings(self.model_dir)
        if causal is not None:
            causal.check_graph(self._graph.metadata, self._graph.output_width, self.onnx_path)
            if self._requested_labels not in (None, 1):
                raise LightembedValueError(
                    f"num_labels={self._requested_labels} was requested, but a LogitScore reranker has one score."
                )
            self._num_labels = 1
            return ModelSetup(self.model_dir, settings, prompts, default_prompt_name, None)
        name, shape = self._graph.output_name, self._graph.output_shape()
        if shape is not None and len(shape) != 2:
            raise LightembedValueError(
                f"The ONNX graph's output {name!r} has shape {shape}; a CrossEncoder needs (batch, num_labels) "
                "logits from a sequence-classification export. Is this an embedding model? Use SentenceTransformer."
            )
        self._num_labels = self._find_num_labels(self._requested_labels)
        return ModelSetup(self.model_dir, settings, prompts, default_prompt_name, None)

    def _find_num_labels(self, requested: int | None) -> int:
        width = self._graph.output_width
        configured = self.config.get("num_labels")
        if configured is None and isinstance(self.config.get("id2label"), dict):
            configured = len(self.config["id2label"])
        if width is not None:
            if requested is not None and requested != width:
                raise LightembedValueError(
                    f"num_labels={requested} was requested, but the ONNX graph outputs {width} label(s); an exported "
                    "classification head cannot be resized."
                )
            return int(width)
        return int(requested or configured or 1)

    def get_default_activation_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """The activation the model's config asks for (Sigmoid for one label, Identity for several by default):
        sentence-transformers' lookup, config_sentence_transformers.json, then config.json's "sentence_transformers"
        block, then the legacy "sbert_ce_default_activation_function"."""
        candidates = [read_json(self.model_dir / "config_sentence_transformers.json").get("activation_fn")]
        st_block = self.config.get("sentence_transformers")
        if isinstance(st_block, dict) and "activation_fn" in st_block:
            candidates.append(st_block["activation_fn"])
        else:
            candidates.append(self.config.get("sbert_ce_default_activation_function"))
        for path in candidates:
            if isinstance(path, str) and path:
                resolved = activations.from_trusted_path(path, self.trust_remote_code)
                if resolved is not None:
                    return resolved
        return Sigmoid() if self.num_labels == 1 else Identity()

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def num_labels(self) -> int:
        return self._num_labels

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

    # ----- prediction -------------------------------------------------------------------------------
    def forward(self, batch: Batch, activation_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Scores (rows, num_labels) of one padded batch of pairs: the graph's logits through the activation
        (`activation_fn`, else the model's)."""
        logits = self._graph(batch.as_dict())
        if self._causal is not None:
            logits = self._causal.scores(batch.attention_mask, logits)
        num_labels = self.num_labels
        if logits.ndim != 2 or logits.shape[1] != num_labels:
            raise LightembedValueError(f"The ONNX graph returned logits of shape {logits.shape}; expected (batch, {num_labels}).")
        out = np.asarray((activation_fn or self.activation_fn)(logits), dtype=np.float32)
        if out.shape != logits.shape:
            raise LightembedValueError(f"activation_fn changed the shape of the logits from {logits.shape} to {out.shape}.")
        return out

    @overload
    def predict(
        self,
        inputs: tuple[str, str],
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = ...,
        apply_softmax: bool | None = ...,
        convert_to_numpy: bool = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> np.floating | np.ndarray: ...

    @overload
    def predict(
        self,
        inputs: Sequence[tuple[str, str]] | Sequence[list[str]],
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = ...,
        apply_softmax: bool | None = ...,
        convert_to_numpy: Literal[True] = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> np.ndarray: ...

    @overload
    def predict(
        self,
        inputs: Any,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        activation_fn: Callable[[np.ndarray], np.ndarray] | str | None = ...,
        apply_softmax: bool | None = ...,
        convert_to_numpy: bool = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> np.ndarray | list[Any]: ...

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
        if self._uses_pool(pool, device):
            from lightembed.pool import predict_scores

            return predict_scores(
                self, inputs, pool, device, chunk_size, kwargs, show_progress_bar=show_progress_bar,
                convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor, prompt_name=prompt_name,
                prompt=prompt, batch_size=batch_size, activation_fn=activation_fn, apply_softmax=apply_softmax,
            )  # fmt: skip
        self._check_call("predict()", device, kwargs)
        pairs, single = as_pairs(inputs)
        batch_size = check_batch_size(batch_size)
        activation = as_activation(activation_fn) if activation_fn is not None else self.activation_fn
        items = self.pair_inputs(pairs, self._prompt(prompt, prompt_name))
        scores = np.zeros((len(pairs), self.num_labels), dtype=np.float32)
        for idx, batch in self._batches(items, batch_size, show_progress_bar):
            out = self.forward(batch, activation)
            if apply_softmax and self.num_labels > 1:
                # As sentence-transformers 6: a one-label model's scores are 1-D and take no softmax (5.x took it
                # over the one label, which made every score 1.0).
                out = softmax(out, axis=1)
            scores[idx] = out

        result = scores[:, 0] if self.num_labels == 1 else scores
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
        """Score `query` against each document; a list of {"corpus_id", "score"[, "text"]} dicts, best first, the
        scores Python floats (as sentence-transformers 6; JSON-serializable). `apply_softmax` has no effect on a
        one-label model and warns.

        Only for one-label models. `top_k` keeps the best k (None: all; a negative k is an error, as in
        util.semantic_search); ties keep corpus
        order.
        """
        activation_fn = pop_legacy(kwargs, activation_fn, "activation_fct")
        kwargs.pop("num_workers", None)
        if kwargs:
            raise LightembedValueError(f"rank() got keyword arguments it does not use: {sorted(kwargs)}.")
        if apply_softmax:
            warnings.warn(
                "The CrossEncoder.rank `apply_softmax` argument has no effect, as `rank` only supports models with "
                "`num_labels=1` (as in sentence-transformers 6).",
                UserWarning,
                stacklevel=2,
            )
        if self.num_labels != 1:
            raise LightembedValueError(
                f"CrossEncoder.rank() only works for models with num_labels=1; this model has {self.num_labels}. "
                "Use CrossEncoder.predict() with (query, document) pairs instead."
            )
        query = check_text(query, "query")
        if documents is None or isinstance(documents, (str, bytes, bytearray)):
            raise LightembedTypeError(
                f"documents must be a list of strings, got {'None' if documents is None else type(documents).__name__}."
            )
        if hasattr(documents, "tolist") and not isinstance(documents, (list, tuple)):
            documents = documents.tolist()
        documents = list(documents)
        for i, doc in enumerate(documents):
            check_text(doc, f"documents[{i}]")
        if top_k is not None:
            if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)):
                raise LightembedTypeError(f"top_k must be an integer or None, got {type(top_k).__name__}.")
            # Like util.semantic_search: a slice such as [:-1] would silently drop the lowest documents.
            top_k = check_int(top_k, "top_k", minimum=0)
        if not documents:
            return []
        scores = self.predict(
            [(query, doc) for doc in documents],
            prompt_name=prompt_name,
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            device=device,
            pool=pool,
            chunk_size=chunk_size,
        )
        del convert_to_numpy, convert_to_tensor  # no-ops in 6.x's rank: scores are Python floats
        results = []
        for i, score in enumerate(np.asarray(scores, dtype=np.float32).tolist()):
            entry: dict[str, Any] = {"corpus_id": i, "score": score}
            if return_documents:
                entry["text"] = documents[i]
            results.append(entry)
        results.sort(key=lambda r: r["score"], reverse=True)  # stable: ties keep corpus order
        return results[:top_k]

    def set_keep_in_fp32_modules(self, module_names: list[str]) -> None:
        """sentence-transformers 6 runs the named linear layers in fp32 under torch autocast; an ONNX graph has no
        autocast (each file has one precision), so only [] is accepted and any name is a ValueError, as 6.2
        answers on its ONNX backend."""
        if not isinstance(module_names, (list, tuple)):
            raise LightembedValueError("keep_in_fp32_modules must be a list of module paths.")
        if module_names:
            raise LightembedValueError(
                f"keep_in_fp32_modules={list(module_names)!r} is supported only by sentence-transformers' torch "
                "backend; lightembed runs ONNX files, whose precision is the file's (model.float() picks the fp32 one)."
            )
        self.keep_in_fp32_modules = []

    def pair_inputs(self, pairs: Sequence[tuple[str, str]], prompt: str | None) -> list[Any]:
        """The items tokenize_inputs takes for `pairs` with `prompt` (None or "": none), where sentence-transformers
        puts it: in front of each query, or a causal-LM reranker's system message (SystemPair)."""
        if not prompt:
            return list(pairs)
        if self._causal is not None:
            return [SystemPair(prompt, a, b) for a, b in pairs]
        return [(prompt + a, b) for a, b in pairs]

    def tokenize_inputs(self, items: Sequence[TextInput]) -> list[Encoding]:
        """Stage 1: (text, text) pairs to truncated, unpadded tokens; a causal-LM reranker's written as
        sentence-transformers writes them (its items may also be SystemPairs: a prompt as the system message)."""
        if self._causal is not None:
            return self._causal.encode(self.tokenizer_wrapper, items)
        return super().tokenize_inputs(items)

    def _reopened(self, before: Any) -> None:
        if self._causal is not None:  # another file of the folder: it must gather the same tokens
            self._causal.check_graph(self._graph.metadata, self._graph.output_width, self.onnx_path)

    def tokenize(self, pairs: Any) -> dict[str, np.ndarray]:
        """Token arrays for (text, text) pairs, padded to the longest: input_ids, attention_mask, token_type_ids."""
        pairs, _ = as_pairs(pairs)
        return self.pad(self.tokenize_inputs(pairs)).as_dict()

    def is_singular_input(self, inputs: Any) -> bool:
        """Whether `inputs` is one (text, text) pair (True) or a batch of pairs, by sentence-transformers' rule."""
        if isinstance(inputs, (list, tuple)):
            return len(inputs) > 0 and not isinstance(inputs[0], (list, tuple))
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind in ("U", "O"):
            return inputs.size > 0 and inputs.ndim < 2
        return True

    model = torch_only(
        "model",
        "it is the torch transformers model in sentence-transformers; lightembed runs an ONNX graph "
        "(see runtime_info; the config is model.config)",
    )

    def _model_config(self) -> dict[str, Any]:
        config = super()._model_config()
        name = getattr(self.activation_fn, "torch_name", "")
        if name:  # a custom callable has no name sentence-transformers could load
            config["activation_fn"] = name
        return config

    def _repr_fields(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "max_length": self.max_seq_length, "activation_fn": self.activation_fn}

"""The base of SentenceTransformer, CrossEncoder and SparseEncoder: loading, the shared properties and checks,
and the pipeline stages every model class (and the server, pool and handlers above them) is built from.

Stages, each a method:
1. `tokenize_inputs(items)`: texts (or text pairs) to unpadded token encodings;
2. `plan(encodings, batch_size)`: which inputs go together, longest first, under the token budget;
3. `pad(encodings)`: one padded `Batch`;
4. `forward(batch, ...)`: run the graph on the batch and post-process its rows (each class its own).
`encode()`/`predict()` are these stages in a loop; a caller that gathers inputs from many requests (the
server's batcher) runs the same stages on its own batches.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Sequence

import numpy as np
from tokenizers import Encoding

from lightembed import openvino_backend, preoptimized
from lightembed import session as sessions
from lightembed.compat import TorchCompat, _relative
from lightembed.config import TransformerSettings
from lightembed.hub import resolve
from lightembed.inputs import check_int, merge_prompts, resolve_prompt
from lightembed.integrity import check_in_background
from lightembed.progress import progress
from lightembed.tokenize import Batch, TextInput, Tokenizer, plan_batches, token_counts

if TYPE_CHECKING:
    from typing_extensions import Self

# model_kwargs keys with a meaning for an ONNX model; others (torch_dtype, attn_implementation ...) only mean
# something to torch/transformers and are ignored with a warning.
ONNX_MODEL_KWARGS = ("file_name", "provider", "providers", "subfolder", "export", "ov_config")
SIMILARITY_NAMES = ("cosine", "dot", "euclidean", "manhattan")
DOCUMENT_PROMPTS = ("document", "passage", "corpus")


@dataclass(frozen=True)
class ModelSetup:
    """What a model class reads from its folder for the base: where the tokenizer is and how inputs are cut."""

    transformer_dir: Path
    settings: TransformerSettings
    prompts: dict[str, str]
    default_prompt_name: str | None
    similarity_fn_name: str | None


@dataclass(frozen=True)
class RuntimeInfo:
    """What a loaded model runs: the file, the providers, the threads and the graph's inputs and output."""

    model_dir: str
    onnx_file: str
    device: str
    providers: list[str]
    intra_op_threads: int
    graph_inputs: list[str]
    graph_output: str
    pooled_output: bool
    verified: bool
    preoptimized_file: str | None = None
    """The copy saved already optimized for this CPU that runs in place of onnx_file (lightembed.preoptimized)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_batch_tokens(device: str) -> int:
    """Padded tokens per batch by default. On CPU, 2048 bounds the activations of a batch of long documents
    (peak RSS on a 5,000-text mixed corpus: ~390 MiB with it, ~790 MiB without; see benchmarks/RESULTS.md)."""
    return 32768 if device == "cuda" else 2048


class BaseModel(TorchCompat):
    """Shared by the three model classes: resolve a folder or Hub id, check the file against its manifest,
    open the ONNX session and the tokenizer, hold the prompts and the properties users read."""

    _preferred_outputs: ClassVar[tuple[str, ...]] = ()
    _default_similarity: ClassVar[str | None] = "cosine"

    def __init__(
        self,
        model_name_or_path: str | Path,
        device: str | None = None,
        *,
        file_name: str | None = None,
        revision: str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        backend: str | None = "onnx",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        max_seq_length: int | None = None,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
    ) -> None:
        if verify is None:  # images that ran `lightembed verify` at build time may skip the hash at each start
            verify = os.environ.get("LIGHTEMBED_VERIFY", "1").strip().lower() not in ("0", "false", "no", "off")
        if backend not in (None, *openvino_backend.BACKENDS):
            raise ValueError(
                f"lightembed runs ONNX files on onnxruntime (backend='onnx') or OpenVINO (backend='openvino'); "
                f"backend=None chooses; got {backend!r}."
            )
        model_kwargs = dict(model_kwargs or {})
        ignored = sorted(set(model_kwargs) - set(ONNX_MODEL_KWARGS))
        if ignored:
            warnings.warn(f"model_kwargs {ignored} have no meaning for an ONNX model and are ignored.", stacklevel=3)
        file_name = file_name or model_kwargs.get("file_name")
        if model_kwargs.get("subfolder") and file_name and "/" not in file_name:
            file_name = f"{model_kwargs['subfolder']}/{file_name}"
        if providers is None:
            providers = model_kwargs.get("providers") or (
                [model_kwargs["provider"]] if model_kwargs.get("provider") else None
            )
        self.model_dir, self.onnx_path = resolve(
            model_name_or_path,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
        )
        self._threads, self._verify = threads, verify
        self._ov_config = dict(model_kwargs.get("ov_config") or {})
        providers = sessions.resolve_providers(device, providers)
        self._backend, self.backend_reason = openvino_backend.choose_backend(
            backend,
            cpu_only=sessions.provider_names(providers) == [sessions.CPU],
            manifest_entry=openvino_backend.manifest_entry(self.model_dir, self.onnx_path),
        )
        self._open(self.onnx_path, providers)
        self._loaded_path = self.onnx_path

        self._auto_batch_tokens = max_batch_tokens == "auto"
        if max_batch_tokens == "auto":
            max_batch_tokens = default_batch_tokens(self.device)
        elif max_batch_tokens is not None:
            max_batch_tokens = check_int(max_batch_tokens, "max_batch_tokens")
        self.max_batch_tokens: int | None = max_batch_tokens
        """Most padded tokens (rows x longest) in one graph run; None: no cap."""

        setup = self._setup()
        settings = setup.settings
        self.tokenizer_wrapper = Tokenizer.from_dir(
            setup.transformer_dir,
            max_seq_length if max_seq_length is not None else settings.max_seq_length,
            settings.do_lower_case,
            settings.position_limit,
        )
        self.prompts, self.default_prompt_name = merge_prompts(
            setup.prompts, setup.default_prompt_name, prompts, default_prompt_name
        )
        if self._default_similarity is not None:
            self.similarity_fn_name = similarity_fn_name or setup.similarity_fn_name or self._default_similarity

    def _setup(self) -> ModelSetup:
        """Read the class's own configs from `self.model_dir` (the session is open by now)."""
        raise NotImplementedError

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def similarity_fn_name(self) -> str:
        """The similarity function similarity() uses: "cosine", "dot", "euclidean" or "manhattan"."""
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: Any) -> None:
        value = getattr(value, "value", value)  # a SimilarityFunction enum member
        if value not in SIMILARITY_NAMES:
            raise ValueError(f"similarity_fn_name must be one of {SIMILARITY_NAMES}, got {value!r}.")
        self._similarity_fn_name = value

    @property
    def max_seq_length(self) -> int | None:
        """Inputs longer than this many tokens (special tokens included) are truncated. Setting it is safe while
        other threads encode; values beyond the model's position embeddings are refused."""
        return self.tokenizer_wrapper.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self.tokenizer_wrapper.max_length = value

    @property
    def tokenizer(self) -> Any:
        """The underlying `tokenizers.Tokenizer`."""
        return self.tokenizer_wrapper.backend

    def get_max_seq_length(self) -> int | None:
        return self.max_seq_length

    @property
    def runtime_info(self) -> RuntimeInfo:
        """What this model runs: ONNX file, providers, threads, graph inputs and output, fused pooling, whether
        the file was checked against lightembed.json."""
        session = self._graph.session
        return RuntimeInfo(
            model_dir=str(self.model_dir),
            onnx_file=_relative(self.onnx_path, self.model_dir),
            device=self.device,
            providers=session.get_providers(),
            intra_op_threads=session.get_session_options().intra_op_num_threads,
            graph_inputs=self._graph.input_names,
            graph_output=self._graph.output_name,
            pooled_output=bool(getattr(self, "has_pooled_output", False)),
            verified=self._verified,
            preoptimized_file=(
                _relative(self.graph_path, self.model_dir) if self.graph_path != self.onnx_path else None
            ),
        )

    # ----- device and precision: torch's Module methods, answered by choosing a file and a provider ------
    def _open(self, onnx_path: Path, providers: list[Any]) -> None:
        """Open the session for `onnx_path` on `providers` (the manifest check overlapping session creation) and
        set the graph, file, providers and device from it; __init__ and every later switch come through here."""
        companion = self._companion(onnx_path, providers)
        verified = check_in_background(self.model_dir, onnx_path, companion) if self._verify else None
        try:
            graph = self._make_graph(onnx_path, providers, companion)
        except ValueError:
            if verified is not None:
                verified()  # a damaged file: say so rather than onnxruntime's parse error
            raise
        self._verified = verified() is not None if verified is not None else False
        self._graph = graph
        self.onnx_path, self.graph_path = onnx_path, companion or onnx_path
        self.providers = providers
        self.device = "cuda" if sessions.CUDA in graph.session.get_providers() else "cpu"

    def _companion(self, onnx_path: Path, providers: list[Any]) -> Path | None:
        """The pre-optimized copy of `onnx_path` to run instead (onnxruntime on the CPU only), or None."""
        if getattr(self, "_backend", "onnx") != "onnx":
            return None
        return preoptimized.companion_on(self.model_dir, onnx_path, providers)

    def _make_graph(self, onnx_path: Path, providers: list[Any], companion: Path | None = None) -> Any:
        """The graph for `onnx_path`: an onnxruntime session (on `companion`, its pre-optimized copy, when given),
        or the file compiled by OpenVINO (backend="openvino")."""
        if getattr(self, "_backend", "onnx") == "openvino":
            if sessions.provider_names(providers) != [sessions.CPU]:
                raise ValueError("backend='openvino' runs on the CPU only; load with backend='onnx' for CUDA.")
            return openvino_backend.OpenVinoGraph(
                onnx_path, self._threads, None, self._preferred_outputs, getattr(self, "_ov_config", None)
            )
        if companion is not None:
            session = sessions.create_session(companion, providers, self._threads, optimize=False)
        else:
            session = sessions.create_session(onnx_path, providers, self._threads)
        return sessions.OnnxGraph(session, self._preferred_outputs)

    def _switch(
        self,
        onnx_path: Path | None = None,
        providers: list[Any] | None = None,
        backend: str | None = None,
        ov_precision: str | None = None,
    ) -> Self:
        """Re-open the graph on another file, providers and/or backend (OpenVINO with INFERENCE_PRECISION_HINT
        `ov_precision`); nothing happens when all are the current ones, and a failed switch leaves the model as it
        was."""
        onnx_path = self.onnx_path if onnx_path is None else onnx_path
        providers = self.providers if providers is None else providers
        old_backend, old_config = getattr(self, "_backend", "onnx"), dict(getattr(self, "_ov_config", {}))
        config = dict(old_config)
        if ov_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = ov_precision
        backend = backend or old_backend
        if (onnx_path, providers, backend, config) == (self.onnx_path, self.providers, old_backend, old_config):
            return self
        before = self._graph
        self._backend, self._ov_config = backend, config
        try:
            self._open(onnx_path, providers)
        except BaseException:
            self._backend, self._ov_config = old_backend, old_config
            raise
        if self._auto_batch_tokens:
            self.max_batch_tokens = default_batch_tokens(self.device)
        self._reopened(before)
        return self

    def _reopened(self, before: sessions.OnnxGraph) -> None:
        """Refresh what a class derives from the graph after `_switch` (`before` is the previous graph)."""

    # ----- checks shared by encode()/predict() ------------------------------------------------------
    def _check_call(self, method: str, device: Any, kwargs: dict[str, Any]) -> None:
        """Reject keywords `method` does not use and a device other than the model's (a pool or a device list
        goes to lightembed/pool.py before this check)."""
        if kwargs:
            raise ValueError(f"{method} got keyword arguments it does not use: {sorted(kwargs)}.")
        if device is not None and str(device).split(":")[0] != self.device:
            cls = type(self).__name__
            raise ValueError(
                f"This model runs on {self.device!r}; to use {device!r}, load it with {cls}(..., device={device!r})."
            )

    @staticmethod
    def _uses_pool(pool: Any, device: Any) -> bool:
        """Whether a call goes to worker processes: a pool, or (as in sentence-transformers) a device list."""
        return pool is not None or (isinstance(device, (list, tuple)) and len(device) > 0)

    # ----- multi-process pool (lightembed/pool.py) ----------------------------------------------------
    def start_multi_process_pool(self, target_devices: Sequence[str] | None = None) -> Any:
        """Start worker processes that each load this model once: "cpu" entries are pinned to their own share of
        the cores, "cuda:N" entries run on GPU N; None: one per GPU, else one CPU worker (measured default, see
        lightembed/pool.py). Pass the result as encode(..., pool=pool) / predict(..., pool=pool); it is a context
        manager, and stop_multi_process_pool(pool) stops it."""
        from lightembed.pool import MultiProcessPool

        return MultiProcessPool(self, target_devices)

    @staticmethod
    def stop_multi_process_pool(pool: Any) -> None:
        """Stop the workers of a pool from start_multi_process_pool() and leave no process behind."""
        pool.close()

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        return resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)

    # ----- pipeline stages ---------------------------------------------------------------------------
    def tokenize_inputs(self, items: Sequence[TextInput]) -> list[Encoding]:
        """Stage 1: texts (or (text, text) pairs) to truncated, unpadded encodings."""
        return self.tokenizer_wrapper.encode(items)

    def plan(self, encodings: Sequence[Encoding], batch_size: int) -> list[np.ndarray]:
        """Stage 2: indices of each batch, longest first, at most `batch_size` rows and `max_batch_tokens`."""
        return plan_batches(token_counts(encodings), batch_size, self.max_batch_tokens)

    def pad(self, encodings: Sequence[Encoding]) -> Batch:
        """Stage 3: one padded batch of int64 arrays."""
        return self.tokenizer_wrapper.pad(encodings)

    def forward(self, batch: Batch, **options: Any) -> Any:
        """Stage 4: run the graph on a padded batch and post-process its rows (per class)."""
        raise NotImplementedError

    def _batches(
        self, items: Sequence[TextInput], batch_size: int, show_progress_bar: bool | None
    ) -> Iterator[tuple[np.ndarray, Batch]]:
        """(indices, padded batch) for every batch that will run; the progress bar counts exactly those."""
        encodings = self.tokenize_inputs(items)
        plan = self.plan(encodings, batch_size)
        for idx in progress(plan, bool(show_progress_bar), "Batches", total=len(plan)):
            yield idx, self.pad([encodings[i] for i in idx])

    def __repr__(self) -> str:
        if not hasattr(self, "tokenizer_wrapper"):  # failed or unfinished __init__
            return f"{type(self).__name__}(<not loaded>)"
        fields = {
            "path": str(self.model_dir),
            "onnx": self.onnx_path.name,
            **self._repr_fields(),
            "providers": self._graph.session.get_providers(),
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def _repr_fields(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length}


class EmbeddingModel(BaseModel):
    """A base model with encode(): adds the query/document prompt helpers."""

    def encode(self, inputs: Any = None, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode_multi_process(
        self, sentences: Sequence[str], pool: Any, chunk_size: int | None = None, **kwargs: Any
    ) -> Any:
        """encode(sentences, pool=pool, chunk_size=chunk_size, ...): sentence-transformers' older name."""
        return self.encode(sentences, pool=pool, chunk_size=chunk_size, **kwargs)

    def encode_query(self, inputs: str | Sequence[str] | None = None, prompt_name: str | None = None,
                     prompt: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
        """encode() with the "query" prompt when the model has one and no prompt was given."""
        kwargs.update(prompt_name=prompt_name, prompt=prompt)
        return self.encode(inputs, **self._with_role(("query",), kwargs))

    def encode_document(self, inputs: str | Sequence[str] | None = None, prompt_name: str | None = None,
                        prompt: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
        """encode() with the first of the "document", "passage", "corpus" prompts the model has, when no prompt
        was given (sentence-transformers' fallback)."""
        kwargs.update(prompt_name=prompt_name, prompt=prompt)
        return self.encode(inputs, **self._with_role(DOCUMENT_PROMPTS, kwargs))

    def _with_role(self, names: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in names:
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return kwargs

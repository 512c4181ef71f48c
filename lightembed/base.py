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

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal, Mapping, Sequence

import numpy as np
from tokenizers import Encoding

from lightembed import env, pipeline
from lightembed import manifest as manifests
from lightembed.compat import TorchCompat, _relative
from lightembed.config import TransformerSettings
from lightembed.errors import LightembedValueError
from lightembed.graphs import Graph, GraphOptions, open_graph, resolve_providers
from lightembed.graphs.integrity import check_support_files
from lightembed.hub import resolve
from lightembed.inputs import check_int, merge_prompts, resolve_prompt, take_task_options
from lightembed.progress import progress
from lightembed.router import RouterConfig, pool_refusal
from lightembed.tokenize import Batch, TextInput, Tokenizer, plan_batches, token_counts

if TYPE_CHECKING:
    from typing_extensions import Self

# model_kwargs keys with a meaning for an ONNX model; others (torch_dtype, attn_implementation ...) only mean
# something to torch/transformers and are ignored with a warning.
ONNX_MODEL_KWARGS = ("file_name", "provider", "providers", "subfolder", "export", "ov_config")
# processor_kwargs (tokenizer_kwargs) keys with a meaning for the tokenizer lightembed runs, and what they set.
PROCESSOR_KWARGS = {"model_max_length": "max_seq_length"}
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


def _from_processor_kwargs(processor_kwargs: dict[str, Any] | None, max_seq_length: int | None) -> int | None:
    """max_seq_length after `processor_kwargs` (sentence-transformers' tokenizer/processor arguments): the keys
    that mean something for lightembed's tokenizer are applied, any other is refused by name."""
    if not processor_kwargs:
        return max_seq_length
    unknown = sorted(set(processor_kwargs) - set(PROCESSOR_KWARGS))
    if unknown:
        raise LightembedValueError(
            f"processor_kwargs {unknown} cannot be applied: lightembed's tokenizer takes only {sorted(PROCESSOR_KWARGS)} "
            "(the tokenizer.json of the exported folder defines the rest)."
        )
    value = processor_kwargs.get("model_max_length")
    return max_seq_length if value is None or max_seq_length is not None else check_int(value, "model_max_length")


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
        backend: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        max_seq_length: int | None = None,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        preoptimized: bool | None = None,
        spinning: bool | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if verify is None:  # images that ran `lightembed verify` at build time may skip the hash at each start
            verify = env.flag("LIGHTEMBED_VERIFY", True) is not False
        max_seq_length = _from_processor_kwargs(processor_kwargs, max_seq_length)
        if config_kwargs:
            raise LightembedValueError(
                f"config_kwargs {sorted(config_kwargs)} cannot be applied: an exported ONNX graph's configuration is "
                "fixed at export; export the model again with the configuration you want."
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
        self.manifest: manifests.Manifest | None = manifests.read(self.model_dir, strict=verify)
        """The folder's lightembed.json (lightembed.manifest), read once at load; None when it has none."""
        options = GraphOptions.for_device(
            device,
            providers,
            backend=backend,
            threads=threads,
            verify=verify,
            preoptimized=preoptimized,
            spinning=spinning,
            ov_config=dict(model_kwargs.get("ov_config") or {}),
            preferred_outputs=self._preferred_outputs,
        )
        self._opened = open_graph(self.model_dir, self.onnx_path, options, self.manifest)
        if verify and self.manifest is not None:
            check_support_files(self.model_dir, self.manifest.support_files)
        self.backend_reason: str = self._opened.backend_reason
        """Why this backend runs (lightembed.graphs.policy): the request, the environment, or the measured record."""
        self._loaded_path = self.onnx_path

        self._auto_batch_tokens = max_batch_tokens == "auto"
        if max_batch_tokens == "auto":
            max_batch_tokens = default_batch_tokens(self.device)
        elif max_batch_tokens is not None:
            max_batch_tokens = check_int(max_batch_tokens, "max_batch_tokens")
        self.max_batch_tokens: int | None = max_batch_tokens
        """Most padded tokens (rows x longest) in one graph run; None: no cap."""
        self.host_pipeline: bool | None = None
        """Tokenize the next batches on a thread while one runs (lightembed.pipeline); None: on CUDA only."""

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
            raise LightembedValueError(f"similarity_fn_name must be one of {SIMILARITY_NAMES}, got {value!r}.")
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
        opened = self._opened
        return RuntimeInfo(
            model_dir=str(self.model_dir),
            onnx_file=_relative(self.onnx_path, self.model_dir),
            device=self.device,
            providers=opened.graph.providers,
            intra_op_threads=opened.graph.threads,
            graph_inputs=opened.graph.input_names,
            graph_output=opened.graph.output_name,
            pooled_output=bool(getattr(self, "has_pooled_output", False)),
            verified=opened.verified,
            preoptimized_file=_relative(opened.run_path, self.model_dir) if opened.preoptimized else None,
        )

    # ----- the open graph (lightembed.graphs) ---------------------------------------------------------------
    @property
    def _graph(self) -> Graph:
        return self._opened.graph

    @_graph.setter
    def _graph(self, graph: Graph) -> None:  # a wrapper around the open graph (tests record what it is fed)
        self._opened = replace(self._opened, graph=graph)

    @property
    def onnx_path(self) -> Path:
        """The ONNX file this model runs (its pre-optimized copy may run in its place: runtime_info)."""
        return self._opened.path if hasattr(self, "_opened") else self._requested_path

    @onnx_path.setter
    def onnx_path(self, value: Path) -> None:
        self._requested_path = value

    @property
    def graph_path(self) -> Path:
        """The file the graph was opened from: onnx_path, or its pre-optimized copy."""
        return self._opened.run_path

    @property
    def providers(self) -> list[Any]:
        """The onnxruntime providers list the graph was opened with."""
        return list(self._opened.options.providers)

    @property
    def device(self) -> str:
        """"cpu" or "cuda": where the graph runs."""
        return self._opened.device

    @property
    def _backend(self) -> str:
        return self._opened.backend

    @property
    def _verified(self) -> bool:
        return self._opened.verified

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
        before = self._opened
        config = dict(before.options.ov_config)
        if ov_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = ov_precision
        options = replace(
            before.options,
            providers=tuple(before.options.providers if providers is None else providers),
            backend=backend or before.backend,
            ov_config=config,
            optimize=True,
        )
        target = before.path if onnx_path is None else onnx_path
        if (target, options.providers, options.backend, config) == (
            before.path, before.options.providers, before.backend, before.options.ov_config
        ):
            return self
        self._opened = open_graph(self.model_dir, target, options, self.manifest)
        if self._auto_batch_tokens:
            self.max_batch_tokens = default_batch_tokens(self.device)
        self._reopened(before.graph)
        return self

    def state_without_graph(self) -> dict[str, Any]:
        """Everything the model holds but its open graph (which cannot be pickled), for `from_state`."""
        state = {k: v for k, v in self.__dict__.items() if k != "_opened"}
        state["_graph_options"] = self._opened.options
        state["_requested_path"] = self._opened.path
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str, threads: int | None = None, io_binding: bool = False) -> Self:
        """The model `state_without_graph()` described, with its file opened again on `device` with `threads`
        intra-op threads: how a pool worker rebuilds the model it was sent (lightembed.pool)."""
        model = cls.__new__(cls)
        model.__dict__.update(state)
        options = replace(
            model.__dict__.pop("_graph_options"), providers=tuple(resolve_providers(device)), threads=threads
        )
        model._opened = open_graph(model.model_dir, model._requested_path, options, model.manifest)
        model._opened.graph.io_binding = io_binding
        return model

    def _reopened(self, before: Graph) -> None:
        """Refresh what a class derives from the graph after `_switch` (`before` is the previous graph)."""

    # ----- checks shared by encode()/predict() ------------------------------------------------------
    def _check_call(self, method: str, device: Any, kwargs: dict[str, Any]) -> None:
        """Reject keywords `method` does not use and a device other than the model's (a pool or a device list
        goes to lightembed/pool.py before this check)."""
        if kwargs:
            raise LightembedValueError(f"{method} got keyword arguments it does not use: {sorted(kwargs)}.")
        if device is not None and str(device).split(":")[0] != self.device:
            cls = type(self).__name__
            raise LightembedValueError(
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

    if TYPE_CHECKING:  # each class has its own keywords and return type
        forward: Callable[..., Any]
    else:

        def forward(self, batch: Batch, **options: Any) -> Any:
            """Stage 4: run the graph on a padded batch and post-process its rows (per class)."""
            raise NotImplementedError

    def _batches(
        self, items: Sequence[TextInput], batch_size: int, show_progress_bar: bool | None
    ) -> Iterator[tuple[np.ndarray, Batch]]:
        """(indices, padded batch) for every batch that will run; the progress bar counts exactly those. With the
        host pipeline (on CUDA, or `host_pipeline=True`) the next batches are tokenized on a thread meanwhile."""
        if pipeline.wanted(self.device, getattr(self, "host_pipeline", None)):
            yield from pipeline.batches(self, items, batch_size, show_progress_bar)
            return
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
            "providers": self._graph.providers,
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def _repr_fields(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length}


class EmbeddingModel(BaseModel):
    """A base model with encode(): adds the query/document prompt helpers."""

    router: RouterConfig | None = None
    """A Router model's routes (lightembed.router); None for any other model."""
    routes: Mapping[str, Any] = {}
    """A Router model's other routes, each a model of its own; the model runs the default route."""

    def _other_route(self, kwargs: dict[str, Any]) -> Any:
        """The route model a Router sends this encode() call to (by its `task`) when that is not this model (the
        default route); None otherwise. Takes sentence-transformers 6's task options out of `kwargs`."""
        task = kwargs.get("task")
        take_task_options(kwargs)
        return self.routes.get(self.router.resolve(task)) if self.router is not None else None

    def state_without_graph(self) -> dict[str, Any]:
        """See BaseModel.state_without_graph; a Router model's routes are models of their own, refused here."""
        if self.router is not None:
            raise pool_refusal(self.router)
        return super().state_without_graph()

    if TYPE_CHECKING:  # each class has its own overloads
        encode: Callable[..., Any]
    else:

        def encode(self, inputs: Any = None, **kwargs: Any) -> Any:  # pragma: no cover - overridden
            raise NotImplementedError

    def encode_multi_process(
        self, sentences: Sequence[str], pool: Any, chunk_size: int | None = None, **kwargs: Any
    ) -> Any:
        """encode(sentences, pool=pool, chunk_size=chunk_size, ...): sentence-transformers' older name."""
        return self.encode(sentences, pool=pool, chunk_size=chunk_size, **kwargs)

    def encode_query(self, inputs: str | Sequence[str] | None = None, prompt_name: str | None = None,
                     prompt: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
        """encode() with task "query" (a Router's query route) and the "query" prompt when the model has one and no
        prompt was given."""
        kwargs.update(prompt_name=prompt_name, prompt=prompt)
        kwargs.setdefault("task", "query")
        return self.encode(inputs, **self._with_role(("query",), kwargs))

    def encode_document(self, inputs: str | Sequence[str] | None = None, prompt_name: str | None = None,
                        prompt: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
        """encode() with task "document" (a Router's document route) and the first of the "document", "passage",
        "corpus" prompts the model has, when no prompt was given (sentence-transformers' fallback)."""
        kwargs.update(prompt_name=prompt_name, prompt=prompt)
        kwargs.setdefault("task", "document")
        return self.encode(inputs, **self._with_role(DOCUMENT_PROMPTS, kwargs))

    def _with_role(self, names: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in names:
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return kwargs

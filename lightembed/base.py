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

from lightembed import openvino_backend
from lightembed import session as sessions
from lightembed import variants
from lightembed.config import TransformerSettings
from lightembed.hub import resolve
from lightembed.inputs import check_int, merge_prompts, resolve_prompt
from lightembed.integrity import check_in_background
from lightembed.progress import progress
from lightembed.tokenize import Batch, TextInput, Tokenizer, plan_batches, token_counts
from lightembed.unsupported import TRAIN_WITH_ST, NotSupportedError, refusal

if TYPE_CHECKING:
    from typing_extensions import Self

# model_kwargs keys with a meaning for an ONNX model; others (torch_dtype, attn_implementation ...) only mean
# something to torch/transformers and are ignored with a warning.
ONNX_MODEL_KWARGS = ("file_name", "provider", "providers", "subfolder", "export", "ov_config")
SIMILARITY_NAMES = ("cosine", "dot", "euclidean", "manhattan")
DOCUMENT_PROMPTS = ("document", "passage", "corpus")
_CLASSES = ("SentenceTransformer", "CrossEncoder", "SparseEncoder")


class PrecisionWarning(UserWarning):
    """half()/bfloat16()/float() found nothing to switch to and kept the current ONNX file."""


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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_batch_tokens(device: str) -> int:
    """Padded tokens per batch by default. On CPU, 2048 bounds the activations of a batch of long documents
    (peak RSS on a 5,000-text mixed corpus: ~390 MiB with it, ~790 MiB without; see benchmarks/RESULTS.md)."""
    return 32768 if device == "cuda" else 2048


class BaseModel:
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
        )

    # ----- device and precision: torch's Module methods, answered by choosing a file and a provider ------
    def _open(self, onnx_path: Path, providers: list[Any]) -> None:
        """Open the session for `onnx_path` on `providers` (the manifest check overlapping session creation) and
        set the graph, file, providers and device from it; __init__ and every later switch come through here."""
        verified = check_in_background(self.model_dir, onnx_path) if self._verify else None
        try:
            graph = self._make_graph(onnx_path, providers)
        except ValueError:
            if verified is not None:
                verified()  # a damaged file: say so rather than onnxruntime's parse error
            raise
        self._verified = verified() is not None if verified is not None else False
        self._graph = graph
        self.onnx_path = onnx_path
        self.providers = providers
        self.device = "cuda" if sessions.CUDA in graph.session.get_providers() else "cpu"

    def _make_graph(self, onnx_path: Path, providers: list[Any]) -> Any:
        """The graph for `onnx_path`: an onnxruntime session, or the file compiled by OpenVINO (backend="openvino")."""
        if getattr(self, "_backend", "onnx") == "openvino":
            if sessions.provider_names(providers) != [sessions.CPU]:
                raise ValueError("backend='openvino' runs on the CPU only; load with backend='onnx' for CUDA.")
            return openvino_backend.OpenVinoGraph(
                onnx_path, self._threads, None, self._preferred_outputs, getattr(self, "_ov_config", None)
            )
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

    @property
    def precision(self) -> str:
        """What the model computes in: "float32", "float16", "bfloat16" or "int8": the ONNX file's (its
        lightembed.json record, else its name), or "bfloat16" where OpenVINO runs an fp32 file in bf16."""
        found = variants.precision_of(self.model_dir, self.onnx_path)
        if found == "float32" and "bf16" in str(getattr(self._graph, "inference_precision", "")):
            return "bfloat16"
        return found

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype of the file's floating-point computation: float16 for an fp16 file, else float32 (int8 files
        keep float32 activations; `precision` tells int8 and bfloat16 apart). Embeddings are always float32."""
        return np.dtype(np.float16) if self.precision == "float16" else np.dtype(np.float32)

    def to(self, *args: Any, **kwargs: Any) -> Self:
        """torch's `Module.to`: a device ("cpu", "cuda", "cuda:N", a torch.device or a GPU index) re-creates the
        session on that provider with the rules of `device=` (an error when onnxruntime cannot offer it, never a
        fallback); a dtype (torch's or NumPy's float16/bfloat16/float32) calls half()/bfloat16()/float()."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        kwargs.pop("copy", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments: {sorted(kwargs)}.")
        for arg in args:
            if isinstance(arg, bool):  # torch's positional non_blocking
                continue
            if _dtype_name(arg) is not None:
                dtype = arg
            else:
                device = arg
        if device is not None:
            self._move(device)
        if dtype is not None:
            name = _dtype_name(dtype)
            if name == "float16":
                self.half()
            elif name == "bfloat16":
                self.bfloat16()
            elif name == "float32":
                self.float()
            else:
                raise TypeError(f"to(): lightembed switches between float32, float16 and bfloat16 files, not {dtype}.")
        return self

    def cuda(self, device: Any = None) -> Self:
        """Run on CUDA (GPU `device`, default 0), like `to("cuda")`."""
        return self._move("cuda" if device is None else device if not isinstance(device, int) else f"cuda:{device}")

    def cpu(self) -> Self:
        """Run on the CPU, like `to("cpu")`."""
        return self._move("cpu")

    def _move(self, device: Any) -> Self:
        if isinstance(device, int) and not isinstance(device, bool):
            device = f"cuda:{device}"
        elif not isinstance(device, str):
            device = str(device)  # torch.device("cuda", 1) -> "cuda:1"
        return self._switch(providers=sessions.resolve_providers(device))

    def half(self) -> Self:
        """Run the folder's fp16 file (onnx/model_O4.onnx, the exporter's O4) when on CUDA. On CPU, or with no fp16
        file, it warns (PrecisionWarning, naming what to export or load) and keeps the current file."""
        return self._to_precision("float16")

    def bfloat16(self) -> Self:
        """Run in bfloat16: the folder's bf16 file when it has one, else the fp32 file through OpenVINO in bf16 on a
        CPU with AMX-BF16 (`lightembed[openvino]`); otherwise warn (PrecisionWarning, saying what is missing) and
        keep the current file."""
        return self._to_precision("bfloat16")

    def float(self) -> Self:
        """Back to fp32 from bf16/fp16: OpenVINO in f32 where it ran the fp32 file in bf16, else the fp32 file the
        model was loaded with, else onnx/model.onnx. An fp32 or int8 file stays (torch's float() leaves integer
        weights alone too)."""
        return self._to_precision("float32")

    def _to_precision(self, wanted: str) -> Self:
        current = self.precision
        if wanted == current or (wanted == "float32" and current == "int8"):
            return self
        method = {"float16": "half", "bfloat16": "bfloat16", "float32": "float"}[wanted]
        keep = f"keeps {_relative(self.onnx_path, self.model_dir)} ({current})"
        if wanted == "float16" and self.device != "cuda":
            warnings.warn(
                f"{method}(): fp16 ONNX files (onnx/model_O4.onnx) are made for CUDA and onnxruntime has no fast fp16 "
                f"path on CPU; this model runs on CPU, so it {keep}. On a GPU: .to('cuda').half(). On CPU the smaller "
                "and faster file is int8 (`lightembed-export <model> -o <out> --quantize auto`).",
                PrecisionWarning,
                stacklevel=3,
            )
            return self
        if wanted == "float32" and variants.precision_of(self.model_dir, self.onnx_path) == "float32":
            return self._switch(ov_precision="f32")  # OpenVINO ran this fp32 file in bf16
        if wanted == "float32" and variants.precision_of(self.model_dir, self._loaded_path) == "float32":
            target: Path | None = self._loaded_path  # back to the fp32 file the user chose (O3, say)
        else:
            target = variants.find_file(self.model_dir, wanted)
        if target is None and wanted == "bfloat16":
            missing = self._bf16_path_missing()
            if missing is None:  # the CPU bf16 path: OpenVINO on AMX-BF16 (lightembed/openvino_backend.py)
                return self._switch(backend="openvino", ov_precision="bf16")
            keep = f"{keep}: {missing}"
        if target is None:
            how = {
                "float16": (
                    "export one with `lightembed-export <model> -o <out> --optimize O4` (writes onnx/model_O4.onnx)"
                ),
                "bfloat16": (
                    "on CUDA use .half() (fp16); on CPU an int8 file (`lightembed-export <model> -o <out> "
                    "--quantize auto`) is the other fast path"
                ),
                "float32": "export the model again with `lightembed-export` (it always writes onnx/model.onnx)",
            }[wanted]
            warnings.warn(
                f"{method}(): {self.model_dir} has no {wanted} ONNX file, so the model {keep}; {how}.",
                PrecisionWarning,
                stacklevel=3,
            )
            return self
        return self._switch(onnx_path=target)

    def _bf16_path_missing(self) -> str | None:
        """Why this model cannot run its fp32 file in bf16 through OpenVINO here (None: it can)."""
        if self.device != "cpu":
            return "the bf16 path is OpenVINO's, on the CPU"
        if not openvino_backend.has_amx_bf16():
            return "the bf16 path needs a CPU with AMX-BF16 (Intel Sapphire Rapids or later), which this one lacks"
        if not openvino_backend.is_installed():
            return f"the bf16 path on this AMX-BF16 CPU is OpenVINO, not installed ({openvino_backend.EXTRA_HINT})"
        return None

    def eval(self) -> Self:
        """The model, unchanged: an ONNX model is always in inference mode."""
        return self

    def train(self, mode: bool = True) -> Self:
        """train(False) is eval(); train(True) raises NotSupportedError (lightembed does not train)."""
        if mode:
            raise NotSupportedError(f"{type(self).__name__}.train() is not supported: {TRAIN_WITH_ST}")
        return self

    double = refusal("double", "lightembed has no float64 ONNX path; float() (fp32) is the most precise file.")

    # ----- the rest of sentence-transformers' public names ------------------------------------------------
    def get_backend(self) -> Literal["onnx", "openvino"]:
        """The inference backend: "onnx" (onnxruntime) or "openvino" (`backend_reason` says why it was chosen)."""
        return getattr(self, "_backend", "onnx")

    def is_singular_input(self, inputs: Any) -> bool:
        """Whether `inputs` is one text (True) or a batch (a list, tuple or 1-D+ string array), by
        sentence-transformers' rule."""
        if isinstance(inputs, (list, tuple)):
            return False
        return not (isinstance(inputs, np.ndarray) and inputs.ndim >= 1 and inputs.dtype.kind in ("U", "O"))

    @property
    def modalities(self) -> list[str]:
        """The input modalities this model takes: ["text"]."""
        return ["text"]

    def supports(self, modality: Any) -> bool:
        """Whether the model takes `modality` (a name such as "text", or a tuple of names)."""
        return modality in self.modalities

    def get_model_kwargs(self) -> list[str]:
        """Extra keyword arguments the model's forward pass takes: none for an exported graph."""
        return []

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """Token arrays for a list of inputs (texts, or pairs for a CrossEncoder), `prompt` prepended to each
        text (to the first text of a pair), padded to the longest: what the graph is fed."""
        if kwargs:
            raise ValueError(f"preprocess() got keyword arguments it does not use: {sorted(kwargs)}.")
        if inputs is None or len(inputs) == 0:
            return {}
        if prompt:
            inputs = [
                (prompt + item[0], *item[1:]) if isinstance(item, (tuple, list)) else prompt + item for item in inputs
            ]
        return self.tokenize(inputs)

    def tokenize(self, inputs: Any) -> dict[str, np.ndarray]:  # pragma: no cover - each class defines it
        raise NotImplementedError

    @property
    def processor(self) -> Any:
        """The tokenizer (sentence-transformers 5's name for the input processor)."""
        return self.tokenizer

    @property
    def transformers_model(self) -> None:
        """None: there is no transformers (torch) model underneath, only the ONNX session (`runtime_info`)."""
        return None

    @property
    def model_type(self) -> str:
        """The sentence-transformers class this model is: "SentenceTransformer", "CrossEncoder" or "SparseEncoder"."""
        ours = (c for c in type(self).__mro__ if c.__module__.startswith("lightembed."))
        return next(c.__name__ for c in ours if c.__name__ in _CLASSES)

    @classmethod
    def load(cls, input_path: str | Path) -> Self:
        """`cls(input_path)` (sentence-transformers' older spelling)."""
        return cls(input_path)

    def save(
        self,
        path: str | Path,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
    ) -> None:
        """Write a folder that lightembed and sentence-transformers' ONNX backend both load: the ONNX file in use as
        onnx/model.onnx, the configs with the current settings (max_seq_length, prompts, default prompt,
        similarity function, truncate_dim ...), tokenizer and module files, and lightembed.json for the file
        (see lightembed/saving.py). `safe_serialization` and `train_datasets` have no effect (no torch weights)."""
        from lightembed.saving import save_model

        save_model(self, path, model_name=model_name, create_model_card=create_model_card)

    def save_pretrained(
        self,
        path: str | Path,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        safe_serialization: bool = True,
    ) -> None:
        """The same as save()."""
        self.save(path, model_name, create_model_card, train_datasets, safe_serialization)

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        local_model_path: str | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """save() to a temporary folder (or take `local_model_path`) and upload it to the Hugging Face Hub repo
        `repo_id` with huggingface_hub, creating the repo; returns the commit URL (the PR URL with create_pr)."""
        from lightembed.saving import push_to_hub

        return push_to_hub(
            self,
            repo_id,
            token=token,
            private=private,
            commit_message=commit_message,
            local_model_path=local_model_path,
            exist_ok=exist_ok,
            replace_model_card=replace_model_card,
            revision=revision,
            create_pr=create_pr,
        )

    def save_to_hub(self, repo_id: str, organization: str | None = None, **kwargs: Any) -> str:
        """push_to_hub() (sentence-transformers' deprecated name); `organization` prefixes a bare `repo_id`."""
        if organization:
            if "/" not in repo_id:
                repo_id = f"{organization}/{repo_id}"
            elif repo_id.split("/")[0] != organization:
                raise ValueError(f"organization={organization!r} does not match repo_id={repo_id!r}.")
        return self.push_to_hub(repo_id, **kwargs)

    def _model_config(self) -> dict[str, Any]:
        """The keys of config_sentence_transformers.json that save() writes from the current settings."""
        config: dict[str, Any] = {
            "model_type": self.model_type,
            "prompts": dict(self.prompts),
            "default_prompt_name": self.default_prompt_name,
        }
        if self._default_similarity is not None:
            config["similarity_fn_name"] = self.similarity_fn_name
        return config

    def _save_extra(self, folder: Path) -> None:
        """Write what a class keeps in its own module configs (the base keeps nothing there)."""

    # Training and evaluation belong to sentence-transformers: one clear error each.
    fit = refusal("fit")
    old_fit = refusal("old_fit")
    evaluate = refusal("evaluate")
    smart_batching_collate = refusal("smart_batching_collate")
    smart_batching_collate_text_only = refusal("smart_batching_collate_text_only")
    get_sentence_features = refusal("get_sentence_features")
    gradient_checkpointing_enable = refusal("gradient_checkpointing_enable")

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

    def encode_query(self, inputs: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """encode() with the "query" prompt when the model has one and no prompt was given."""
        return self.encode(inputs, **self._with_role(("query",), kwargs))

    def encode_document(self, inputs: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """encode() with the first of the "document", "passage", "corpus" prompts the model has, when no prompt
        was given (sentence-transformers' fallback)."""
        return self.encode(inputs, **self._with_role(DOCUMENT_PROMPTS, kwargs))

    def _with_role(self, names: Sequence[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in names:
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return kwargs


_DTYPES = {"float16": "float16", "half": "float16", "bfloat16": "bfloat16", "float32": "float32", "float": "float32",
           "float64": "float64", "double": "float64"}  # fmt: skip


def _dtype_name(value: Any) -> str | None:
    """"float16", "bfloat16", "float32", "float64" for a torch or NumPy floating dtype, another name for other
    torch dtypes, None for anything that is not a dtype (a device)."""
    if isinstance(value, (str, int)):
        return None
    text = str(value)
    if text.startswith("torch.") and not text.startswith("torch.device"):
        return _DTYPES.get(text[len("torch."):], text)
    try:
        return _DTYPES.get(np.dtype(value).name, np.dtype(value).name)
    except TypeError:
        return None


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)

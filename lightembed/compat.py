"""torch Module methods and the rest of sentence-transformers' public names, answered for an ONNX model.

Precision and device switches choose a file and a provider through the base's `_switch` (never a silent fallback);
persistence writes a folder both libraries load (lightembed/saving.py); training and evaluation are refused with
one clear error (lightembed/unsupported.py). Mixed into `BaseModel`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Sequence

import numpy as np

from lightembed import machine, variants
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.graphs import openvino, resolve_providers
from lightembed.unsupported import TRAIN_WITH_ST, NotSupportedError, refusal

if TYPE_CHECKING:
    from typing_extensions import Self

    from lightembed.manifest import Precision

_CLASSES = ("SentenceTransformer", "CrossEncoder", "SparseEncoder", "MultiVectorEncoder")


class PrecisionWarning(UserWarning):
    """half()/bfloat16()/float() found nothing to switch to and kept the current ONNX file."""


class TorchCompat:
    """What sentence-transformers code calls beyond encode()/predict(); needs BaseModel's attributes."""

    if TYPE_CHECKING:  # what BaseModel provides
        from lightembed.graphs import Graph
        from lightembed.manifest import Manifest

        model_dir: Path
        onnx_path: Path
        _loaded_path: Path
        manifest: Manifest | None
        prompts: dict[str, str]
        default_prompt_name: str | None
        similarity_fn_name: str
        _default_similarity: ClassVar[str | None]

        @property
        def device(self) -> str: ...
        @property
        def _graph(self) -> Graph: ...
        @property
        def _backend(self) -> str: ...
        @property
        def tokenizer(self) -> Any: ...
        def __init__(self, model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> None: ...
        def _switch(
            self,
            onnx_path: Path | None = None,
            providers: list[Any] | None = None,
            backend: str | None = None,
            ov_precision: str | None = None,
        ) -> Self: ...

    @property
    def precision(self) -> str:
        """What the model computes in: "float32", "float16", "bfloat16" or "int8": the ONNX file's (its
        lightembed.json record, else its name), or "bfloat16" where OpenVINO runs an fp32 file in bf16."""
        found = variants.precision_of(self.model_dir, self.onnx_path, self.manifest)
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
            raise LightembedTypeError(f"to() got unexpected keyword arguments: {sorted(kwargs)}.")
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
                raise LightembedTypeError(f"to(): lightembed switches between float32, float16 and bfloat16 files, not {dtype}.")
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
        return self._switch(providers=resolve_providers(device))

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

    def _to_precision(self, wanted: Precision) -> Self:
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
        if wanted == "float32" and variants.precision_of(self.model_dir, self.onnx_path, self.manifest) == "float32":
            return self._switch(ov_precision="f32")  # OpenVINO ran this fp32 file in bf16
        if wanted == "float32" and variants.precision_of(self.model_dir, self._loaded_path, self.manifest) == "float32":
            target: Path | None = self._loaded_path  # back to the fp32 file the user chose (O3, say)
        else:
            target = variants.find_file(self.model_dir, wanted, self.manifest)
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
        if not machine.has_amx_bf16():
            return "the bf16 path needs a CPU with AMX-BF16 (Intel Sapphire Rapids or later), which this one lacks"
        if not openvino.is_installed():
            return f"the bf16 path on this AMX-BF16 CPU is OpenVINO, not installed ({openvino.EXTRA_HINT})"
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
        return self._backend  # type: ignore[return-value]  # one of graphs.policy.BACKENDS

    @property
    def backend(self) -> Literal["onnx", "openvino"]:
        """The inference backend (sentence-transformers 6's attribute): as get_backend()."""
        return self.get_backend()

    def clear_placement_cache(self) -> None:
        """Nothing to clear: sentence-transformers 6 drops its cached Accelerate hooks here, and an ONNX model has
        none (its device is the session's providers, see runtime_info)."""

    @classmethod
    def merge(cls, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported (raises NotSupportedError): merging averages torch weights (mergekit)."""
        raise NotSupportedError(
            f"{cls.__name__}.merge() is not supported: it merges torch weights with mergekit. Merge with "
            "sentence-transformers (pip install 'sentence-transformers[merge]'), save the result and export it with "
            "`lightembed-export`."
        )

    merge.__func__.__lightembed_refusal__ = True  # type: ignore[attr-defined]

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
            raise LightembedValueError(f"preprocess() got keyword arguments it does not use: {sorted(kwargs)}.")
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

        save_model(self, path, model_name=model_name, create_model_card=create_model_card)  # type: ignore[arg-type]

    save_pretrained = save  # sentence-transformers' other name for it

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
            self,  # type: ignore[arg-type]
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
                raise LightembedValueError(f"organization={organization!r} does not match repo_id={repo_id!r}.")
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

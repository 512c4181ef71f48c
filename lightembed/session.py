"""The one place that chooses execution providers and creates ONNX Runtime sessions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# No spinning intra-op threads (onnxruntime spins by default): 1.11x as fast on a quiet 2-core machine and
# 1.29-1.38x with one or two busy processes beside it (benchmarks/spinning.py; see
# benchmarks/RESULTS.md, "Thread spinning").
SPINNING = False


def usable_cores() -> int:
    """Cores this process may actually use: CPU affinity, capped by a cgroup CPU quota if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota + 0.999)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def _installed_onnxruntime_wheels() -> list[str]:
    from importlib import metadata  # only when explaining an error: importing it costs ~40 ms of cold start

    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def _cuda_unavailable_reason() -> str:
    wheels = _installed_onnxruntime_wheels()
    names = [w.split("==")[0] for w in wheels]
    if "onnxruntime-gpu" in names and "onnxruntime" in names:
        why = (
            "both the 'onnxruntime' (CPU) and 'onnxruntime-gpu' wheels are installed over each other; "
            "run `pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`"
        )
    elif "onnxruntime-gpu" in names:
        why = "onnxruntime-gpu is installed but cannot load CUDA (check the CUDA/cuDNN libraries and driver)"
    else:
        why = "the CPU-only 'onnxruntime' wheel is installed; install 'onnxruntime-gpu' instead to use CUDA"
    return (
        f"CUDA was requested, but onnxruntime offers no CUDAExecutionProvider "
        f"(available: {ort.get_available_providers()}; installed: {wheels or 'none found'}): {why}."
    )


def cuda_options(device_id: int) -> dict[str, Any]:
    """CUDA provider options for `device`: TF32 off, since onnxruntime turns it on by default and TF32 MatMuls
    (10-bit mantissa inputs) move fp32 outputs away from torch's fp32 (which keeps TF32 off for MatMul).
    Pass providers=[("CUDAExecutionProvider", {"use_tf32": 1})] to trade that accuracy for speed."""
    return {"device_id": device_id, "use_tf32": 0}


def resolve_providers(device: str | None = None, providers: Sequence[Any] | None = None) -> list[Any]:
    """Pick execution providers.

    `providers` (onnxruntime's own list) wins. Otherwise `device`: None gives CUDA when onnxruntime has it,
    else CPU (never another provider implicitly); "cpu" gives CPU; "cuda"/"cuda:N" gives CUDA on GPU N (with
    `cuda_options`) or raises if onnxruntime cannot offer CUDA.
    """
    available = ort.get_available_providers()
    if providers is not None:
        providers = list(providers)
        if not providers:
            raise ValueError("providers must name at least one onnxruntime execution provider.")
        for provider in providers:
            name = provider[0] if isinstance(provider, (tuple, list)) else provider
            if not isinstance(name, str):
                raise TypeError(f"providers entries must be names or (name, options) pairs, got {provider!r}.")
            if name not in available:
                if name == CUDA:
                    raise ValueError(_cuda_unavailable_reason())
                raise ValueError(f"Execution provider {name!r} is not available; available: {available}.")
        return providers
    if device is None:
        return [(CUDA, cuda_options(0)), CPU] if CUDA in available else [CPU]
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}.")
    kind, _, index = device.lower().partition(":")
    if kind == "cpu" and not index:
        return [CPU]
    if kind == "cuda":
        if index and not index.isdigit():
            raise ValueError(f"Invalid device {device!r}: expected 'cuda' or 'cuda:N'.")
        if CUDA not in available:
            raise ValueError(_cuda_unavailable_reason())
        return [(CUDA, cuda_options(int(index or 0))), CPU]
    raise ValueError(f"Unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:N'.")


def provider_names(providers: Sequence[Any]) -> list[str]:
    """The provider names of a providers list that may hold (name, options) pairs."""
    return [p[0] if isinstance(p, (tuple, list)) else p for p in providers]


def spinning_default() -> bool:
    """Whether intra-op threads spin while waiting for work: LIGHTEMBED_SPINNING=1/0, else SPINNING."""
    value = os.environ.get("LIGHTEMBED_SPINNING", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return SPINNING


def create_session(
    path: str | Path,
    providers: Sequence[Any],
    threads: int | None = None,
    spinning: bool | None = None,
    optimize: bool = True,
) -> ort.InferenceSession:
    """Create an inference session for `path` with the given providers, intra-op thread count and thread
    spinning (None: `spinning_default()`); `optimize=False` skips onnxruntime's graph optimization (for a file
    saved already optimized, lightembed.preoptimized)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {path}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3
    if not (spinning_default() if spinning is None else spinning):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    gpu = _requested_gpu(providers)
    on_gpu = f" on CUDA device_id {gpu}" if gpu is not None else ""
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        raise ValueError(f"Could not load ONNX model {path}{on_gpu}: {exc}") from None
    if gpu is not None and CUDA not in session.get_providers():
        raise ValueError(
            f"CUDA device_id {gpu} was requested but onnxruntime fell back to {session.get_providers()} for "
            f"{path}: the CUDA libraries or that GPU could not be loaded (is there a GPU {gpu}?)."
        )
    return session


def _requested_gpu(providers: Sequence[Any]) -> int | None:
    """The CUDA device id a providers list asks for (0 when CUDA is named without options), or None."""
    for provider in providers:
        name, options = (provider[0], provider[1]) if isinstance(provider, (tuple, list)) else (provider, {})
        if name == CUDA:
            try:
                return int((options or {}).get("device_id", 0))
            except (TypeError, ValueError):
                return 0
    return None


_ORT_INT_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32"}
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def position_ids(attention_mask: np.ndarray) -> np.ndarray:
    """Positions as transformers numbers them for a decoder: the running count of real tokens minus one,
    0 on padding, so a left-padded text gets the positions it has alone."""
    mask = np.asarray(attention_mask, dtype=np.int64)
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


class OnnxGraph:
    """A session plus what it declares: feeds it only the inputs it takes, with the dtypes it takes.

    Only the requested output is copied back from a GPU. Setting `io_binding` runs CUDA sessions through an
    IO binding instead of session.run; it measured no faster here (benchmarks/RESULTS_GPU.md), so it is off.
    """

    def __init__(self, session: ort.InferenceSession, preferred_outputs: Sequence[str] = ()) -> None:
        self.session = session
        self.input_dtypes: dict[str, str] = {}
        for node in session.get_inputs():
            if node.name not in _KNOWN_INPUTS:
                raise ValueError(
                    f"The ONNX graph takes an input {node.name!r} that lightembed cannot provide "
                    f"(it provides {_KNOWN_INPUTS})."
                )
            if node.type not in _ORT_INT_TYPES:
                raise ValueError(f"The ONNX graph's input {node.name!r} has unsupported type {node.type}.")
            self.input_dtypes[node.name] = _ORT_INT_TYPES[node.type]
        if "input_ids" not in self.input_dtypes:
            raise ValueError("The ONNX graph has no 'input_ids' input; it is not a text transformer.")
        self.output_names = [node.name for node in session.get_outputs()]
        self.output_name = next((name for name in preferred_outputs if name in self.output_names), self.output_names[0])
        shape = next(node.shape for node in session.get_outputs() if node.name == self.output_name)
        self.output_width: int | None = shape[-1] if shape and isinstance(shape[-1], int) else None
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self._cuda_device = _cuda_device_id(session)
        self.io_binding = False

    @property
    def input_names(self) -> list[str]:
        return list(self.input_dtypes)

    def __call__(self, arrays: dict[str, Any], output: str | None = None) -> Any:
        """Run the graph on int arrays keyed by input name; returns `output` (default: the chosen one) as float32."""
        name = output or self.output_name
        if "position_ids" in self.input_dtypes and "position_ids" not in arrays:
            arrays = {**arrays, "position_ids": position_ids(arrays["attention_mask"])}
        feed = {key: arrays[key].astype(dtype, copy=False) for key, dtype in self.input_dtypes.items()}
        if self.io_binding and self._cuda_device is not None:
            binding = self.session.io_binding()
            for key, value in feed.items():
                binding.bind_cpu_input(key, value)
            binding.bind_output(name, "cuda", self._cuda_device)
            self.session.run_with_iobinding(binding)
            (out,) = binding.copy_outputs_to_cpu()
        else:
            (out,) = self.session.run([name], feed)
        return out if out.dtype == "float32" else out.astype("float32")


def _cuda_device_id(session: ort.InferenceSession) -> int | None:
    """The GPU a session runs on, or None if it does not run on CUDA."""
    if CUDA not in session.get_providers():
        return None
    options = session.get_provider_options().get(CUDA, {})
    try:
        return int(options.get("device_id", 0))
    except (TypeError, ValueError):
        return 0

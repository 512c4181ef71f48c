"""Which onnxruntime execution providers a device means, and why CUDA is missing when it is."""

from __future__ import annotations

from typing import Any, Sequence

import onnxruntime as ort

from lightembed.errors import LightembedTypeError, LightembedValueError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


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
            raise LightembedValueError("providers must name at least one onnxruntime execution provider.")
        for provider in providers:
            name = provider[0] if isinstance(provider, (tuple, list)) else provider
            if not isinstance(name, str):
                raise LightembedTypeError(f"providers entries must be names or (name, options) pairs, got {provider!r}.")
            if name not in available:
                if name == CUDA:
                    raise LightembedValueError(_cuda_unavailable_reason())
                raise LightembedValueError(f"Execution provider {name!r} is not available; available: {available}.")
        return providers
    if device is None:
        return [(CUDA, cuda_options(0)), CPU] if CUDA in available else [CPU]
    if not isinstance(device, str):
        raise LightembedTypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}.")
    kind, _, index = device.lower().partition(":")
    if kind == "cpu" and not index:
        return [CPU]
    if kind == "cuda":
        if index and not index.isdigit():
            raise LightembedValueError(f"Invalid device {device!r}: expected 'cuda' or 'cuda:N'.")
        if CUDA not in available:
            raise LightembedValueError(_cuda_unavailable_reason())
        return [(CUDA, cuda_options(int(index or 0))), CPU]
    raise LightembedValueError(f"Unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:N'.")


def provider_names(providers: Sequence[Any]) -> list[str]:
    """The provider names of a providers list that may hold (name, options) pairs."""
    return [p[0] if isinstance(p, (tuple, list)) else p for p in providers]


def requested_gpu(providers: Sequence[Any]) -> int | None:
    """The CUDA device id a providers list asks for (0 when CUDA is named without options), or None."""
    for provider in providers:
        name, options = (provider[0], provider[1]) if isinstance(provider, (tuple, list)) else (provider, {})
        if name == CUDA:
            try:
                return int((options or {}).get("device_id", 0))
            except (TypeError, ValueError):
                return 0
    return None

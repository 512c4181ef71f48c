"""ONNX Runtime graph optimization of the fp32 export at optimum's levels O1-O4."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError

LEVELS: tuple[str, ...] = ("O1", "O2", "O3", "O4")
FP16_LEVELS: frozenset[str] = frozenset({"O4"})
_REPORTED_FIELDS = (
    "optimization_level",
    "enable_transformers_specific_optimizations",
    "enable_gelu_approximation",
    "fp16",
    "optimize_for_gpu",
)


@dataclass(frozen=True)
class OptimizedFile:
    """An optimized ONNX file and the configuration that produced it."""

    path: Path
    level: str
    config: dict[str, Any]


def file_name(level: str) -> str:
    """The file name sentence-transformers' export_optimized_onnx_model gives `level`: model_O3.onnx."""
    return f"model_{level}.onnx"


def normalize_levels(levels: Any) -> list[str]:
    """Requested levels as an ordered list without repeats; ValueError for an unknown level."""
    if isinstance(levels, str):
        levels = [levels]
    result: list[str] = []
    for level in levels or ():
        name = str(level).upper()
        if name not in LEVELS:
            raise ValueError(f"unknown optimization level {level!r}; choose from {', '.join(LEVELS)}")
        if name not in result:
            result.append(name)
    return result


def cuda_available() -> bool:
    """Whether this onnxruntime build offers the CUDA execution provider."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def check_optimizable(model_type: str | None, architecture: str) -> None:
    """UnsupportedModelError unless ONNX Runtime's transformer optimizer knows `model_type`."""
    from optimum.onnxruntime.configuration import AutoOptimizationConfig
    from optimum.onnxruntime.utils import ORTConfigManager

    try:
        ORTConfigManager.check_optimization_supported_model(model_type or "", AutoOptimizationConfig.O1())
    except (NotImplementedError, KeyError):
        raise UnsupportedModelError(
            f"ONNX Runtime cannot graph-optimize architecture {architecture} (model_type {model_type!r}); "
            "export it without --optimize",
            architecture=architecture,
            model_type=model_type,
        ) from None


def optimize_file(fp32_path: Path, level: str, config_dir: Path) -> OptimizedFile:
    """Write `model_<level>.onnx` next to `fp32_path`; `config_dir` holds the transformers config.json.

    O4 converts to fp16 for CUDA; without CUDA, ONNX Runtime's GPU graph pass is skipped and only the Python
    fusions and the fp16 conversion are applied (inputs and outputs stay float32).
    """
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    from lightembed_export.architectures import load_config

    config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=level in FP16_LEVELS)
    hf_config = load_config(config_dir)
    # from_ortmodel=True: optimum otherwise deletes the source's external data file after optimizing.
    optimizer = ORTOptimizer([fp32_path], config=hf_config, from_ortmodel=True)
    name = file_name(level)
    # Without CUDA, onnxruntime logs "There is no gpu for onnxruntime to do optimization." as an error and
    # goes on without its GPU graph pass; the caller says so in its own words.
    ort_logger = logging.getLogger("onnxruntime.transformers.optimizer")
    saved_level = ort_logger.level
    if config.optimize_for_gpu and not cuda_available():
        ort_logger.setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        try:
            optimizer.optimize(config, tmp, file_suffix=level)
        finally:
            ort_logger.setLevel(saved_level)
        written = sorted(Path(tmp).glob(name + "*"))
        if not any(p.name == name for p in written):
            raise RuntimeError(f"optimum wrote no {name} for {level}")
        for path in written:
            shutil.move(str(path), fp32_path.parent / path.name)
    reported = {"level": level, **{key: getattr(config, key) for key in _REPORTED_FIELDS}}
    if level in FP16_LEVELS:
        reported["ort_gpu_graph_pass"] = cuda_available()
    return OptimizedFile(fp32_path.parent / name, level, reported)

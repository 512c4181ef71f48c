"""ONNX Runtime graph optimization of the fp32 export at optimum's levels O1-O4, with onnxruntime's transformer
optimizer (onnxruntime.transformers.optimizer.optimize_model), the tool optimum's ORTOptimizer drives.

The levels mean what optimum's AutoOptimizationConfig makes them mean, whether optimum is installed or not:
O1 basic graph optimizations by onnxruntime alone; O2 basic and extended optimizations plus the transformer fusions
(attention, layer norm, GELU); O3 O2 with the fast GELU approximation; O4 O3 converted to float16 (for CUDA),
inputs and outputs kept float32. As in optimum, the embedding-layer-norm fusion stays off (and CLIP's group-norm
and packed-KV fusions), and the graph's attention heads and hidden width come from config.json.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.onnx_files import external_locations

LEVELS: tuple[str, ...] = ("O1", "O2", "O3", "O4")
FP16_LEVELS: frozenset[str] = frozenset({"O4"})


@dataclass(frozen=True)
class LevelSettings:
    """What one level sets (the fields lightembed.json reports, under optimum's names)."""

    optimization_level: int
    enable_transformers_specific_optimizations: bool
    enable_gelu_approximation: bool = False
    fp16: bool = False

    @property
    def optimize_for_gpu(self) -> bool:
        return self.fp16  # optimum forces for_gpu on O4: float16 is a GPU precision

    def report(self) -> dict[str, Any]:
        return {
            "optimization_level": self.optimization_level,
            "enable_transformers_specific_optimizations": self.enable_transformers_specific_optimizations,
            "enable_gelu_approximation": self.enable_gelu_approximation,
            "fp16": self.fp16,
            "optimize_for_gpu": self.optimize_for_gpu,
        }


LEVEL_SETTINGS: dict[str, LevelSettings] = {
    "O1": LevelSettings(1, False),
    "O2": LevelSettings(2, True),
    "O3": LevelSettings(2, True, enable_gelu_approximation=True),
    "O4": LevelSettings(2, True, enable_gelu_approximation=True, fp16=True),
}

# transformers model_type -> the model type onnxruntime's optimizer fuses it as (those optimum's levels accept).
_ENCODERS = (
    "albert big_bird blenderbot camembert deberta deberta-v2 distilbert electra longt5 modernbert mpnet "
    "nystromformer pegasus roberta t5 xlm-roberta bert"
)
_DECODERS = "bloom codegen gpt2 gpt_bigcode gpt_neo gpt_neox gptj granite llama mistral"
_SEQ2SEQ = "bart bigbird_pegasus m2m_100 marian mbart mt5 whisper"
_VISION = "dinov2 pix2struct segformer vit"
ORT_MODEL_TYPES: dict[str, str] = {
    **{name: "bert" for name in _ENCODERS.split()},
    **{name: "gpt2" for name in _DECODERS.split()},
    **{name: "bart" for name in _SEQ2SEQ.split()},
    **{name: "vit" for name in _VISION.split()},
    "clip": "clip",
}
# config.json names of the attention head count and the hidden width, across families.
_HEAD_KEYS = ("num_attention_heads", "n_heads", "num_heads", "n_head")
_WIDTH_KEYS = ("hidden_size", "dim", "d_model", "n_embd")


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
    if (model_type or "") not in ORT_MODEL_TYPES:
        raise UnsupportedModelError(
            f"ONNX Runtime cannot graph-optimize architecture {architecture} (model_type {model_type!r}); "
            "export it without --optimize",
            architecture=architecture,
            model_type=model_type,
        )


def _first_int(config: dict[str, Any], keys: tuple[str, ...]) -> int:
    for source in (config, config.get("text_config") or {}):
        for key in keys:
            if isinstance(source.get(key), int):
                return int(source[key])
    return 0  # onnxruntime detects it from the graph


def optimize_graph(source: Path, target: Path, level: str, config_dir: Path) -> dict[str, Any]:
    """Write `source` optimized at `level` to `target` (external data beside it if `source` has any); returns the
    configuration reported in lightembed.json. `config_dir` holds the transformers config.json."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    settings = LEVEL_SETTINGS[level]
    config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    model_type = str(config.get("model_type") or "")
    ort_type = ORT_MODEL_TYPES[model_type]
    options = FusionOptions(ort_type)
    options.enable_embed_layer_norm = False
    options.enable_gelu_approximation = settings.enable_gelu_approximation
    if ort_type == "clip":
        options.enable_group_norm = False
        options.enable_packed_kv = False
    external = bool(external_locations(onnx.load(str(source), load_external_data=False)))
    # Without CUDA, onnxruntime logs "There is no gpu for onnxruntime to do optimization." as an error and
    # goes on without its GPU graph pass; the caller says so in its own words.
    ort_logger = logging.getLogger("onnxruntime.transformers.optimizer")
    saved_level = ort_logger.level
    if settings.optimize_for_gpu and not cuda_available():
        ort_logger.setLevel(logging.CRITICAL)
    try:
        optimizer = optimize_model(
            str(source),
            ort_type,
            _first_int(config, _HEAD_KEYS),
            _first_int(config, _WIDTH_KEYS),
            opt_level=settings.optimization_level,
            optimization_options=options,
            use_gpu=settings.optimize_for_gpu,
            only_onnxruntime=not settings.enable_transformers_specific_optimizations,
        )
        if settings.fp16:
            optimizer.convert_float_to_float16(use_symbolic_shape_infer=True, keep_io_types=True)
    finally:
        ort_logger.setLevel(saved_level)
    optimizer.save_model_to_file(str(target), use_external_data_format=external, all_tensors_to_one_file=True)
    reported = {"level": level, **settings.report()}
    if settings.fp16:
        reported["ort_gpu_graph_pass"] = cuda_available()
    return reported


def optimize_file(fp32_path: Path, level: str, config_dir: Path, name: str | None = None) -> OptimizedFile:
    """Write `model_<level>.onnx` (or `name`) next to `fp32_path`; `config_dir` holds the transformers config.json.

    O4 converts to fp16 for CUDA; without CUDA, ONNX Runtime's GPU graph pass is skipped and only the Python
    fusions and the fp16 conversion are applied (inputs and outputs stay float32).
    """
    name = name or file_name(level)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        reported = optimize_graph(fp32_path, Path(tmp) / name, level, config_dir)
        written = sorted(Path(tmp).glob(name + "*"))
        if not any(p.name == name for p in written):
            raise RuntimeError(f"onnxruntime's optimizer wrote no {name} for {level}")
        for path in written:
            shutil.move(str(path), fp32_path.parent / path.name)
    return OptimizedFile(fp32_path.parent / name, level, reported)

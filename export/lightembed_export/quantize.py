"""int8 quantization of the fp32 export with onnxruntime's quantization tools: dynamic for a CPU target (optimum's
recipes), static (batch-invariant, calibrated), and detection of the CPU this runs on.

Dynamic quantization computes each activation's scale from the whole batch tensor at run time, so a text's
embedding depends on what it is batched with and on padding. Static quantization fixes every scale from
calibration text: a text gets the same embedding alone or in any batch.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export.calibration import CalibrationSet

DYNAMIC_TARGETS: tuple[str, ...] = ("avx2", "avx512", "avx512_vnni", "arm64")
"""optimum's dynamic AutoQuantizationConfig names; each file is named model_{weights dtype}_{target}.onnx."""
AVX2_QINT8 = "avx2_qint8"
"""Dynamic, optimum's avx2 config with int8 (QInt8) weights: u8 x s8 like avx512_vnni, written as
model_qint8_avx2.onnx. Faster than avx2's u8 x u8 on AVX2-only CPUs; what `auto` picks there."""
STATIC = "static"
"""Static (calibrated) int8: u8 activations with fixed scales, per-channel s8 weights, QDQ; model_qint8_static.onnx."""
ROWWISE = "rowwise"
"""Per-token int8 (lightembed_export.rowwise): a scale per token row and per weight column, batch-invariant by
construction, every weight MatMul quantized; model_qint8_rowwise.onnx."""
WEIGHTS = "weights"
"""int8 weights, float activations (lightembed_export.weight_only): per-column int8 weights behind DequantizeLinear,
for OpenVINO (backend="openvino"), batch-invariant; model_qint8_weights.onnx."""
TARGETS: tuple[str, ...] = DYNAMIC_TARGETS + (AVX2_QINT8, STATIC, ROWWISE, WEIGHTS)
STATIC_OPERATORS: tuple[str, ...] = ("MatMul", "Gather")
"""What static files quantize: MatMuls with constant weights and the embedding lookups (Gather)."""
AUTO = "auto"
_ARM_MACHINES = ("arm64", "aarch64", "armv8l", "armv8b")
# The config.json keys holding the feed-forward inner width; MatMuls that read that width (the FFN down projections,
# whose GELU inputs have outliers no fixed scale covers) stay fp32 in static files.
_INTERMEDIATE_KEYS = ("intermediate_size", "hidden_dim", "ffn_dim", "d_ff", "encoder_ffn_dim")


@dataclass(frozen=True)
class QuantTarget:
    """A quantization target and why it was chosen (the name asked for, or the CPU `auto` found)."""

    name: str
    requested_as: tuple[str, ...]
    reason: str | None = None


@dataclass(frozen=True)
class QuantizedFile:
    """A quantized ONNX file and the configuration that produced it."""

    path: Path
    target: str
    config: dict[str, Any]


def _cpu_flags() -> set[str] | None:
    """Lower-case CPU feature flags without underscores (avx512vnni, avx512f, avx2); None if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return {f.replace("_", "").lower() for f in line.split(":", 1)[1].split()}
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return {f.replace("_", "").replace(".", "").lower() for f in out.split()} or None
    return None


def detect_cpu_target(machine: str | None = None, flags: set[str] | None = None) -> tuple[str, str]:
    """The dynamic quantization target for this CPU and a short reason: arm64, avx512_vnni, avx512, avx2_qint8
    (AVX2 without AVX-512), or avx2 (u8 x u8) when the features are unknown or lack AVX2."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in _ARM_MACHINES or machine.startswith("arm"):
        return "arm64", f"{machine} CPU"
    if flags is None:
        flags = _cpu_flags()
    if flags is None:
        return "avx2", f"{machine or 'unknown'} CPU with unknown features; avx2's uint8 model runs on any x86-64"
    if "avx512f" in flags and "avx512vnni" in flags:
        return "avx512_vnni", "x86-64 CPU with AVX-512 VNNI"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512", "x86-64 CPU with AVX-512 (no VNNI)"
    if "avx2" in flags:
        return AVX2_QINT8, "x86-64 CPU with AVX2 (no AVX-512): u8 x s8, faster there than avx2's u8 x u8"
    return "avx2", "x86-64 CPU without AVX2; avx2's uint8 model still runs, more slowly"


def resolve_targets(requested: Iterable[str] | str | None) -> list[QuantTarget]:
    """The requested targets in order, `auto` replaced by this CPU's; repeats merged; ValueError if unknown."""
    if isinstance(requested, str):
        requested = [requested]
    entries: dict[str, tuple[list[str], list[str]]] = {}  # target -> (names asked for, reasons)
    for raw in requested or ():
        key = str(raw).lower()
        reasons: list[str] = []
        if key == AUTO:
            name, why = detect_cpu_target()
            reasons.append(f"auto: {why}")
        elif key in TARGETS:
            name = key
        else:
            raise ValueError(f"unknown quantization target {raw!r}; choose from {', '.join(TARGETS + (AUTO,))}")
        asked, why_list = entries.setdefault(name, ([], []))
        if key not in asked:
            asked.append(key)
        why_list.extend(r for r in reasons if r not in why_list)
    return [QuantTarget(name, tuple(asked), "; ".join(why) or None) for name, (asked, why) in entries.items()]


def _config_name(target: str) -> str:
    """The optimum config name a dynamic target is named after (avx2_qint8 is avx2's)."""
    return "avx2" if target == AVX2_QINT8 else target


@dataclass(frozen=True)
class DynamicConfig:
    """A dynamic int8 recipe, with the settings optimum's AutoQuantizationConfig gives the same target: u8
    activations (asymmetric, scale from each batch at run time), symmetric weights, full range, every operator
    onnxruntime's integer-ops registry covers, each MatMul quantized whether its B input is a weight or not."""

    weights_dtype: Any
    per_channel: bool = True
    reduce_range: bool = False
    weights_symmetric: bool = True
    activations_symmetric: bool = False

    @property
    def activations_dtype(self) -> Any:
        from onnxruntime.quantization import QuantType

        return QuantType.QUInt8

    @property
    def is_static(self) -> bool:
        return False

    @property
    def mode(self) -> Any:
        from onnxruntime.quantization import QuantizationMode

        return QuantizationMode.IntegerOps

    @property
    def format(self) -> Any:
        from onnxruntime.quantization import QuantFormat

        return QuantFormat.QOperator

    @property
    def operators_to_quantize(self) -> list[str]:
        from onnxruntime.quantization.registry import IntegerOpsRegistry

        return list(IntegerOpsRegistry)


def quantization_config(target: str, per_channel: bool = True) -> DynamicConfig:
    """The dynamic recipe for `target`: avx2 has u8 weights (u8 x u8 kernels), every other target
    (arm64, avx512, avx512_vnni, avx2_qint8) s8 weights."""
    from onnxruntime.quantization import QuantType

    if target not in DYNAMIC_TARGETS + (AVX2_QINT8,):
        names = ", ".join(DYNAMIC_TARGETS + (AVX2_QINT8,))
        raise ValueError(f"unknown dynamic quantization target {target!r}; choose from {names}")
    weights = QuantType.QUInt8 if target == "avx2" else QuantType.QInt8
    return DynamicConfig(weights, per_channel=per_channel)


def file_name(target: str, per_channel: bool = True) -> str:
    """The file name of `target`, by the rule of sentence-transformers' export_dynamic_quantized_onnx_model.

    Its rule: f"model_{weights_dtype.name.lower()}_{config}.onnx", e.g. model_qint8_avx512.onnx; avx2's weights
    are uint8, so model_quint8_avx2.onnx; avx2_qint8 (avx2's config, int8 weights) gives model_qint8_avx2.onnx
    and static (int8 weights, config "static") model_qint8_static.onnx.
    """
    if target == STATIC:
        return "model_qint8_static.onnx"
    if target == ROWWISE:
        return "model_qint8_rowwise.onnx"
    if target == WEIGHTS:
        return "model_qint8_weights.onnx"
    config = quantization_config(target, per_channel)
    return f"model_{config.weights_dtype.name.lower()}_{_config_name(target)}.onnx"


def _has_external_data(fp32_path: Path) -> bool:
    return fp32_path.stat().st_size > 1_800_000_000 or any(
        p.name != fp32_path.name for p in fp32_path.parent.glob(fp32_path.name + "*")
    )


def quantize_file(fp32_path: Path, target: str, config_dir: Path, per_channel: bool = True) -> QuantizedFile:
    """Write the dynamically quantized int8 file for `target` next to `fp32_path` (onnxruntime's quantize_dynamic).
    `config_dir` is accepted for symmetry with the other recipes; dynamic int8 needs no config."""
    from onnxruntime.quantization import quantize_dynamic

    config = quantization_config(target, per_channel)
    name = file_name(target, per_channel)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        quantize_dynamic(
            str(fp32_path),
            str(Path(tmp) / name),
            op_types_to_quantize=config.operators_to_quantize,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=config.weights_dtype,
            use_external_data_format=_has_external_data(fp32_path),
            extra_options={
                "WeightSymmetric": config.weights_symmetric,
                "ActivationSymmetric": config.activations_symmetric,
                "MatMulConstBOnly": False,
            },
        )
        written = sorted(Path(tmp).glob(name + "*"))
        if not any(p.name == name for p in written):
            raise RuntimeError(f"onnxruntime wrote no {name} for {target}")
        for path in written:
            shutil.move(str(path), fp32_path.parent / path.name)
    reported = {
        "target": target,
        "is_static": config.is_static,
        "weights_dtype": config.weights_dtype.name,
        "activations_dtype": config.activations_dtype.name,
        "per_channel": bool(config.per_channel),
        "reduce_range": bool(config.reduce_range),
        "weights_symmetric": bool(config.weights_symmetric),
        "activations_symmetric": bool(config.activations_symmetric),
        "mode": config.mode.name,
        "format": config.format.name,
        "operators_to_quantize": list(config.operators_to_quantize),
    }
    return QuantizedFile(fp32_path.parent / name, target, reported)


def ffn_down_projections(model: Any, config_dir: Path) -> list[str]:
    """Names of the MatMul nodes whose constant weight reads the feed-forward inner width (FFN down projections)."""
    try:
        hf_config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    widths = {int(hf_config[k]) for k in _INTERMEDIATE_KEYS if isinstance(hf_config.get(k), int)}
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2 and shapes[node.input[1]][0] in widths
    ]


class _FeedReader:
    """onnxruntime's CalibrationDataReader over an iterator of graph feeds (rewindable)."""

    def __init__(self, make_feeds: Any) -> None:
        self._make = make_feeds
        self._feeds: Iterator[dict[str, Any]] = iter(make_feeds())

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = iter(self._make())


def quantize_static_file(
    fp32_path: Path,
    config_dir: Path,
    calibration: CalibrationSet,
    max_length: int | None,
    pairs: bool = False,
    per_channel: bool = True,
) -> QuantizedFile:
    """Write model_qint8_static.onnx next to `fp32_path`: static int8 calibrated on `calibration`.

    MatMuls with constant weights and embedding Gathers are quantized (QDQ): s8 weights (per channel unless
    `per_channel` is False), u8 activations with scales fixed by the min/max each shows over the calibration
    texts (one text per run, truncated at `max_length`; (text, next text) pairs when `pairs`). The FFN down
    projections stay fp32: the GELU outputs they read have outliers that a fixed scale cannot cover without losing
    the bulk (all-MiniLM-L6-v2: mean cosine to fp32 0.92 with them quantized, 0.99 without). `config_dir` holds
    config.json and the tokenizer. A large model (external data) is written with external data too.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from lightembed_export import calibration as calibrating

    model = onnx.load(str(fp32_path), load_external_data=False)
    input_names = [i.name for i in model.graph.input]
    excluded = ffn_down_projections(model, config_dir)
    large = _has_external_data(fp32_path)
    del model

    class Reader(_FeedReader, CalibrationDataReader):
        pass

    reader = Reader(lambda: calibrating.feeds(calibration, config_dir, input_names, max_length, pairs))
    name = file_name(STATIC)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        quantize_static(
            str(fp32_path),
            str(Path(tmp) / name),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OPERATORS),
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            use_external_data_format=large,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "MatMulConstBOnly": True,
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                # No CalibMaxIntermediateOutputs: onnxruntime 1.32 drops (instead of merging) each full chunk.
            },
        )
        written = sorted(Path(tmp).glob(name + "*"))
        if not any(p.name == name for p in written):
            raise RuntimeError(f"onnxruntime wrote no {name}")
        for path in written:
            shutil.move(str(path), fp32_path.parent / path.name)
    reported = {
        "target": STATIC,
        "is_static": True,
        "batch_invariant": True,
        "weights_dtype": "QInt8",
        "activations_dtype": "QUInt8",
        "per_channel": bool(per_channel),
        "reduce_range": False,
        "weights_symmetric": True,
        "activations_symmetric": False,
        "format": "QDQ",
        "operators_to_quantize": list(STATIC_OPERATORS),
        "calibration_method": "MinMax",
        "calibration": dict(calibration.describe(), max_length=max_length, pairs=pairs),
        "kept_fp32": {"reason": "FFN down projections (GELU outputs with outliers)", "nodes": excluded},
    }
    return QuantizedFile(fp32_path.parent / name, STATIC, reported)


def _batch_invariant_record(target: str, quantized: int, **facts: Any) -> dict[str, Any]:
    """The quantization record of a batch-invariant recipe (per-channel int8 weights on every weight MatMul)."""
    return {
        "target": target,
        "is_static": False,
        "batch_invariant": True,
        "weights_dtype": "QInt8",
        **facts,
        "per_channel": True,
        "operators_to_quantize": ["MatMul"],
        "quantized_nodes": quantized,
    }


def quantize_rowwise_file(fp32_path: Path) -> QuantizedFile:
    """Write model_qint8_rowwise.onnx next to `fp32_path`: every weight MatMul in per-token int8 (see rowwise)."""
    from lightembed_export.rowwise import quantize_rowwise

    path = fp32_path.parent / file_name(ROWWISE)
    done = quantize_rowwise(fp32_path, path)
    reported = _batch_invariant_record(
        ROWWISE,
        len(done["quantized"]),
        activations_dtype="QUInt8 (zero point 128: symmetric)",
        activation_scale="per token (row), from its own absolute maximum",
    )
    return QuantizedFile(path, ROWWISE, reported)


def quantize_weights_file(fp32_path: Path) -> QuantizedFile:
    """Write model_qint8_weights.onnx next to `fp32_path`: int8 weights, float activations (see weight_only)."""
    from lightembed_export.weight_only import quantize_weights

    path = fp32_path.parent / file_name(WEIGHTS)
    done = quantize_weights(fp32_path, path)
    reported = _batch_invariant_record(
        WEIGHTS,
        len(done),
        activations_dtype="float (OpenVINO may quantize them per token group)",
        runs_best_on="OpenVINO (backend='openvino'); onnxruntime dequantizes the weights at each run",
    )
    return QuantizedFile(path, WEIGHTS, reported)

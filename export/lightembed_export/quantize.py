"""Dynamic int8 quantization of the fp32 export for a CPU target, and detection of the CPU this runs on."""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS: tuple[str, ...] = ("avx2", "avx512", "avx512_vnni", "arm64")
AUTO = "auto"
_ARM_MACHINES = ("arm64", "aarch64", "armv8l", "armv8b")


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
    """The quantization target for this CPU (arm64, avx512_vnni, avx512 or avx2) and a short reason."""
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
        return "avx2", "x86-64 CPU with AVX2 (no AVX-512)"
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


def quantization_config(target: str, per_channel: bool = True) -> Any:
    """optimum's dynamic AutoQuantizationConfig for `target`."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in TARGETS:
        raise ValueError(f"unknown quantization target {target!r}; choose from {', '.join(TARGETS)}")
    return getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=per_channel)


def file_name(target: str, per_channel: bool = True) -> str:
    """The name sentence-transformers' export_dynamic_quantized_onnx_model gives `target`.

    Its rule: f"model_{weights_dtype.name.lower()}_{target}.onnx", e.g. model_qint8_avx512.onnx; avx2's weights
    are uint8, so model_quint8_avx2.onnx.
    """
    config = quantization_config(target, per_channel)
    return f"model_{config.weights_dtype.name.lower()}_{target}.onnx"


def quantize_file(fp32_path: Path, target: str, config_dir: Path, per_channel: bool = True) -> QuantizedFile:
    """Write the dynamically quantized int8 file for `target` next to `fp32_path`."""
    from optimum.onnxruntime import ORTQuantizer
    from transformers import AutoConfig

    config = quantization_config(target, per_channel)
    name = file_name(target, per_channel)
    suffix = name[len("model_") : -len(".onnx")]
    quantizer = ORTQuantizer(fp32_path, config=AutoConfig.from_pretrained(config_dir))
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        quantizer.quantize(config, tmp, file_suffix=suffix)
        written = sorted(Path(tmp).glob(name + "*"))
        if not any(p.name == name for p in written):
            raise RuntimeError(f"optimum wrote no {name} for {target}")
        for path in written:
            shutil.move(str(path), fp32_path.parent / path.name)
    reported = {
        "target": target,
        "is_static": bool(config.is_static),
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

"""Which ONNX files a model folder offers and the precision each computes in: what `.half()`, `.bfloat16()` and
`.float()` switch between.

The precision of a file comes from its lightembed.json record (the exporter writes `optimization.fp16` for O4
files and a `quantization` block for int8 files), else from its name (`_O4`, `fp16`, `bf16`, `int8`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from lightembed.integrity import MANIFEST_NAME

Precision = Literal["float32", "float16", "bfloat16", "int8"]
FP32_FILE = "onnx/model.onnx"
FP16_FILE = "onnx/model_O4.onnx"
# Files a folder may hold for each precision, best first (the exporter's names).
_PREFERRED: dict[str, tuple[str, ...]] = {
    "float32": (FP32_FILE, "model.onnx", "onnx/model_O3.onnx", "onnx/model_O2.onnx", "onnx/model_O1.onnx"),
    "float16": (FP16_FILE, "onnx/model_fp16.onnx", "model_O4.onnx", "model_fp16.onnx"),
    "bfloat16": ("onnx/model_bf16.onnx", "model_bf16.onnx"),
}


def _manifest_files(folder: Path) -> dict[str, dict]:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {e["path"]: e for e in files or [] if isinstance(e, dict) and isinstance(e.get("path"), str)}


def _from_record(entry: dict) -> Precision | None:
    kind = str(entry.get("kind") or "")
    if kind in ("fp16", "float16"):
        return "float16"
    if kind in ("bf16", "bfloat16"):
        return "bfloat16"
    if entry.get("quantization"):
        return "int8"
    optimization = entry.get("optimization")
    if isinstance(optimization, dict):
        if optimization.get("bf16"):
            return "bfloat16"
        if optimization.get("fp16"):
            return "float16"
        return "float32"
    return "float32" if kind == "fp32" else None


def _from_name(name: str) -> Precision:
    name = name.lower()
    if "bf16" in name or "bfloat16" in name:
        return "bfloat16"
    if "_o4" in name or "fp16" in name or "float16" in name:
        return "float16"
    if "int8" in name or "quant" in name:
        return "int8"
    return "float32"


def precision_of(folder: Path, onnx_path: Path) -> Precision:
    """The precision `onnx_path` computes in: its manifest record's, else what its name says."""
    try:
        relative = onnx_path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        relative = onnx_path.name
    entry = _manifest_files(folder).get(relative)
    found = _from_record(entry) if entry is not None else None
    return found or _from_name(onnx_path.name)


def find_file(folder: Path, precision: Precision) -> Path | None:
    """The folder's ONNX file for `precision`: the exporter's usual name first, then any file whose manifest
    record (or name) says it computes in that precision; None when there is none."""
    for name in _PREFERRED.get(precision, ()):
        path = folder / name
        if path.is_file() and precision_of(folder, path) == precision:
            return path
    for path in sorted(folder.rglob("*.onnx")):
        if precision_of(folder, path) == precision:
            return path
    return None

"""Which ONNX files a model folder offers and the precision each computes in: what `.half()`, `.bfloat16()` and
`.float()` switch between.

The precision of a file comes from its lightembed.json record (the exporter writes `optimization.fp16` for O4
files and a `quantization` block for int8 files), else from its name (`_O4`, `fp16`, `bf16`, `int8`).
"""

from __future__ import annotations

from pathlib import Path

from lightembed import manifest as manifests
from lightembed.manifest import Manifest, Precision

FP32_FILE = "onnx/model.onnx"
FP16_FILE = "onnx/model_O4.onnx"
# Files a folder may hold for each precision, best first (the exporter's names).
_PREFERRED: dict[str, tuple[str, ...]] = {
    "float32": (FP32_FILE, "model.onnx", "onnx/model_O3.onnx", "onnx/model_O2.onnx", "onnx/model_O1.onnx"),
    "float16": (FP16_FILE, "onnx/model_fp16.onnx", "model_O4.onnx", "model_fp16.onnx"),
    "bfloat16": ("onnx/model_bf16.onnx", "model_bf16.onnx"),
}


def _from_name(name: str) -> Precision:
    name = name.lower()
    if "bf16" in name or "bfloat16" in name:
        return "bfloat16"
    if "_o4" in name or "fp16" in name or "float16" in name:
        return "float16"
    if "int8" in name or "quant" in name:
        return "int8"
    return "float32"


def precision_of(folder: Path, onnx_path: Path, manifest: Manifest | None = None) -> Precision:
    """The precision `onnx_path` computes in: its manifest record's (`manifest`, else the folder's read leniently),
    else what its name says."""
    if manifest is None:
        manifest = manifests.read(folder, strict=False)
    record = manifest.record(onnx_path) if manifest is not None else None
    return (record.precision if record is not None else None) or _from_name(onnx_path.name)


def find_file(folder: Path, precision: Precision, manifest: Manifest | None = None) -> Path | None:
    """The folder's ONNX file for `precision`: the exporter's usual name first, then any file whose manifest
    record (or name) says it computes in that precision; None when there is none."""
    if manifest is None:
        manifest = manifests.read(folder, strict=False)
    for name in _PREFERRED.get(precision, ()):
        path = folder / name
        if path.is_file() and precision_of(folder, path, manifest) == precision:
            return path
    for path in sorted(folder.rglob("*.onnx")):
        if precision_of(folder, path, manifest) == precision:
            return path
    return None

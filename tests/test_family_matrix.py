"""The coverage matrix: a tiny seeded checkpoint of each model family (tests/families.py), exported with fp32, an
optimized level and dynamic int8, each file compared with sentence-transformers on torch. CLIP is exported as two
towers (text and vision) and compared on the same texts and on seeded images; the exporter refuses int8 for it.

Besides asserting, the run writes work/family_matrix.json (override with LIGHTEMBED_MATRIX_JSON), from which
scripts/coverage_table.py renders the README's coverage table.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
MATRIX_JSON = Path(os.environ.get("LIGHTEMBED_MATRIX_JSON", ROOT / "work" / "family_matrix.json"))
INT8 = "avx2_qint8"  # dynamic u8 x s8: runs on any x86-64 CPU onnxruntime supports
FP32_MIN_COS = 0.99999
OPTIMIZED_MIN_COS = 0.9999
_rows: dict[str, dict[str, Any]] = {}
_refused: dict[str, dict[str, Any]] = {}


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    dots = (a * b).sum(1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.where(norms == 0, 1.0, dots / np.maximum(norms, 1e-300))))


def _encode_both(
    src: Path, out: Path, file_name: str, prompt_name: str | None, remote: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(sentence-transformers on torch loading `src`, lightembed loading `file_name` of `out`) embeddings of
    families.TEXTS, batch 4 (mixed lengths, so padding shows)."""
    import sentence_transformers

    import lightembed

    kwargs = {"prompt_name": prompt_name} if prompt_name else {}
    torch_model = sentence_transformers.SentenceTransformer(str(src), device="cpu", trust_remote_code=remote)
    ours = lightembed.SentenceTransformer(str(out), device="cpu", file_name=file_name)
    ref = torch_model.encode(families.TEXTS, batch_size=4, show_progress_bar=False, **kwargs)
    got = ours.encode(families.TEXTS, batch_size=4, **kwargs)
    return np.asarray(ref), np.asarray(got)


def _version_or_none(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="module", autouse=True)
def matrix_artifact():
    """Write the rows gathered by the tests to MATRIX_JSON once the module is done."""
    yield
    if not _rows and not _refused:
        return
    import onnxruntime
    import sentence_transformers
    import torch
    import transformers

    data = {
        "generated_by": "tests/test_family_matrix.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "optimum": _version_or_none("optimum"),
            "onnxruntime": onnxruntime.__version__,
            "sentence-transformers": sentence_transformers.__version__,
        },
        "machine": platform.machine(),
        "texts": len(families.TEXTS),
        "int8_target": INT8,
        "rows": [_rows[name] for name in families.MATRIX_ROWS if name in _rows],
        "refused": [_refused[name] for name, _, _ in families.REFUSED if name in _refused],
    }
    MATRIX_JSON.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_JSON.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize("family", families.FAMILIES, ids=[f.name for f in families.FAMILIES])
def test_family_exports_exactly(family: families.Family, tmp_path: Path) -> None:
    from lightembed_export import UnsupportedModelError, export_model

    src = family.make(tmp_path / "st")
    out = tmp_path / "onnx"
    row: dict[str, Any] = {
        "family": family.name,
        "examples": family.examples,
        "pooling": family.pooling,
        "dense": bool(family.dense),
        "normalize": family.normalize,
        "prompts": bool(family.prompts),
        "trust_remote_code": family.trust_remote_code,
    }
    levels = [family.optimize] if family.optimize else []
    if not family.optimize:  # the exporter must refuse graph optimization with a message naming the architecture
        with pytest.raises(UnsupportedModelError) as refused:
            export_model(
                src, tmp_path / "refused", optimize=["O3"], trust_remote_code=family.trust_remote_code, verbose=False
            )
        assert refused.value.architecture and refused.value.architecture in str(refused.value)
        assert not (tmp_path / "refused").exists()
        row["optimized"] = {"level": "O3", "status": "refused", "reason": str(refused.value)}
    report = export_model(
        src, out, optimize=levels, quantize=[INT8], trust_remote_code=family.trust_remote_code, verbose=False
    )
    row["architecture"] = report["model"]["architecture"]
    files = {entry["kind"]: entry for entry in report["files"]}
    assert all(entry["passed"] for entry in report["files"]), report["files"]

    prompt = next(iter(family.prompts), None)
    ref, got = _encode_both(src, out, "onnx/model.onnx", prompt, family.trust_remote_code)
    fp32_cos = _min_cos(ref, got)
    assert fp32_cos >= FP32_MIN_COS, (family.name, fp32_cos)
    row["fp32"] = {"status": "exact", "min_cos": fp32_cos, "exporter_min_cos": files["fp32"]["metrics"]["min_cosine"]}
    if family.optimize:
        name = f"onnx/model_{family.optimize}.onnx"
        ref, got = _encode_both(src, out, name, prompt, family.trust_remote_code)
        cos = _min_cos(ref, got)
        assert cos >= OPTIMIZED_MIN_COS, (family.name, family.optimize, cos)
        row["optimized"] = {"level": family.optimize, "status": "ok", "min_cos": cos}
    quantized = files["quantized"]["metrics"]
    row["int8"] = {"status": "reported", "mean_cos": quantized["mean_cosine"], "min_cos": quantized["min_cosine"]}
    _rows[family.name] = row


@pytest.mark.parametrize("name,examples,build", families.REFUSED, ids=[r[0] for r in families.REFUSED])
def test_unsupported_family_is_refused_naming_it(name: str, examples: str, build, tmp_path: Path) -> None:
    from lightembed_export import UnsupportedModelError, export_model

    with pytest.raises(UnsupportedModelError) as refused:
        export_model(build(tmp_path / "src"), tmp_path / "out", verbose=False)
    assert refused.value.architecture and refused.value.architecture in str(refused.value)
    assert not (tmp_path / "out").exists()
    _refused[name] = {"family": name, "examples": examples, "architecture": refused.value.architecture,
                      "reason": str(refused.value)}  # fmt: skip


def test_clip_exports_exactly(tmp_path: Path) -> None:
    """CLIP: both towers at fp32 and O2, each compared with sentence-transformers on texts and on images."""
    import sentence_transformers
    from lightembed_export import UnsupportedModelError, export_model
    from lightembed_export.clip import probe_images

    import lightembed

    src = families.clip(tmp_path / "st")
    with pytest.raises(UnsupportedModelError) as refused:
        export_model(src, tmp_path / "int8", quantize=[INT8], verbose=False)
    assert refused.value.architecture == "CLIPModel" and "CLIPModel" in str(refused.value)
    assert not (tmp_path / "int8").exists()
    report = export_model(src, tmp_path / "onnx", optimize=["O2"], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]

    images = probe_images()
    torch_model = sentence_transformers.SentenceTransformer(str(src), device="cpu")
    ref = np.concatenate([torch_model.encode(families.TEXTS, batch_size=4), torch_model.encode(images, batch_size=4)])
    cos = {}
    for level, name in (("fp32", "onnx/text_model.onnx"), ("O2", "onnx/text_model_O2.onnx")):
        ours = lightembed.SentenceTransformer(str(tmp_path / "onnx"), device="cpu", file_name=name)
        got = np.concatenate([ours.encode(families.TEXTS, batch_size=4), ours.encode(images, batch_size=4)])
        cos[level] = _min_cos(ref, got)
    assert cos["fp32"] >= FP32_MIN_COS, cos
    assert cos["O2"] >= OPTIMIZED_MIN_COS, cos
    _rows[families.CLIP_FAMILY] = {
        "family": families.CLIP_FAMILY,
        "examples": families.CLIP_EXAMPLES,
        "architecture": report["model"]["architecture"],
        "modules": "text + image towers",
        "pooling": None,
        "dense": False,
        "normalize": False,
        "prompts": False,
        "trust_remote_code": False,
        "images": len(images),
        "fp32": {"status": "exact", "min_cos": cos["fp32"]},
        "optimized": {"level": "O2", "status": "ok", "min_cos": cos["O2"]},
        "int8": {"status": "refused", "reason": str(refused.value)},
    }

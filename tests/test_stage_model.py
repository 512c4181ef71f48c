"""deploy/stage_model.py: one ONNX file per image, renamed onnx/model.onnx with its manifest record, and its
pre-optimized CPU copy only when asked (it doubles the bytes and only loads on the CPU class that wrote it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lightembed import SentenceTransformer
from lightembed.graphs import preoptimized
from tests.test_preoptimized import _with_manifest
from tests.tiny import make_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))

from stage_model import stage  # noqa: E402


def _exported(tmp_path: Path) -> Path:
    folder = _with_manifest(make_model(tmp_path / "src"))
    preoptimized.write_all(folder)
    return folder


def test_stage_leaves_the_copy_out_by_default(tmp_path):
    src = _exported(tmp_path)
    dest = stage(src, tmp_path / "image-model")
    assert sorted(p.name for p in (dest / "onnx").iterdir()) == ["model.onnx"]
    entry = json.loads((dest / "lightembed.json").read_text())["files"][0]
    assert preoptimized.RECORD not in entry
    model = SentenceTransformer(dest, device="cpu")
    assert model.runtime_info.verified and model.runtime_info.preoptimized_file is None


def test_stage_keeps_the_copy_when_asked_and_the_image_loads_it(tmp_path):
    src = _exported(tmp_path)
    dest = stage(src, tmp_path / "image-model", preoptimized=True)
    assert sorted(p.name for p in (dest / "onnx").iterdir()) == ["model.onnx", "model.onnx.cpu", "model.onnx.cpu.data"]
    model = SentenceTransformer(dest, device="cpu")
    assert model.runtime_info.verified and model.runtime_info.preoptimized_file == "onnx/model.onnx.cpu"
    texts = ["the cat sat", "a dog ran in the park"]
    np.testing.assert_array_equal(model.encode(texts), SentenceTransformer(src, device="cpu").encode(texts))

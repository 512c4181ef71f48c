"""The pre-optimized CPU copy of an ONNX file (lightembed.preoptimized): written and checked, recorded in
lightembed.json, loaded instead of its file only on the machine it was made for, and never loaded damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer, machine
from lightembed.errors import IntegrityError
from lightembed.graphs import preoptimized
from lightembed.graphs.integrity import sha256_of
from lightembed.manifest import MANIFEST_NAME
from tests.tiny import make_model

TEXTS = ["hello world", "a longer text with more words in it than the first", "x"]


def _with_manifest(folder: Path, passed: bool = True) -> Path:
    onnx = folder / "onnx" / "model.onnx"
    manifest = {
        "format_version": 1,
        "files": [{"path": "onnx/model.onnx", "sha256": sha256_of(onnx), "size": onnx.stat().st_size, "passed": passed}],
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def folder(tmp_path):
    return _with_manifest(make_model(tmp_path / "tiny"))


@pytest.fixture
def written(folder):
    records = preoptimized.write_all(folder)
    return folder, records["onnx/model.onnx"]


def _record(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())["files"][0][preoptimized.RECORD]


def test_write_saves_the_copy_with_its_weights_apart_and_records_it(written):
    folder, record = written
    copy = folder / "onnx" / "model.onnx.cpu"
    data = folder / "onnx" / "model.onnx.cpu.data"
    assert record["passed"] is True and record["error"] is None
    assert record["path"] == "onnx/model.onnx.cpu" and copy.is_file() and data.is_file()
    assert copy.stat().st_size < data.stat().st_size  # the graph alone; the weights sit in the data file
    assert record["sha256"] == sha256_of(copy) and record["external_data"][0]["sha256"] == sha256_of(data)
    assert record["made_for"] == machine.onnxruntime_build()
    assert record["metrics"]["min_cosine"] >= preoptimized.MIN_COSINE
    assert _record(folder) == record  # stored under its file's entry


def test_runtime_loads_the_copy_and_gives_the_same_vectors(written, monkeypatch):
    folder, _ = written
    fast = SentenceTransformer(folder, device="cpu")
    assert fast.runtime_info.preoptimized_file == "onnx/model.onnx.cpu"
    assert fast.runtime_info.onnx_file == "onnx/model.onnx"
    assert fast.runtime_info.verified is True
    assert fast._graph.session.get_session_options().graph_optimization_level.name == "ORT_DISABLE_ALL"
    monkeypatch.setenv(preoptimized.ENV, "0")
    plain = SentenceTransformer(folder, device="cpu")
    assert plain.runtime_info.preoptimized_file is None
    np.testing.assert_array_equal(fast.encode(TEXTS), plain.encode(TEXTS))


@pytest.mark.parametrize(
    "field, value",
    [("onnxruntime", "0.0.1"), ("machine", "sparc64"), ("isa", ["avx2"])],
)
def test_a_copy_made_for_another_machine_is_not_loaded(written, field, value):
    folder, _ = written
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"][0][preoptimized.RECORD]["made_for"][field] = value
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    model = SentenceTransformer(folder, device="cpu")
    assert model.runtime_info.preoptimized_file is None  # the exported file itself, optimized at load
    assert model._graph.session.get_session_options().graph_optimization_level.name == "ORT_ENABLE_ALL"


@pytest.mark.parametrize("damaged", ["model.onnx.cpu", "model.onnx.cpu.data"])
def test_a_damaged_copy_is_refused(written, damaged):
    folder, _ = written
    path = folder / "onnx" / damaged
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=damaged.replace(".", r"\.")):
        SentenceTransformer(folder, device="cpu")
    if damaged.endswith(".data"):  # the user's explicit opt-out loads it (a changed weight parses fine)
        model = SentenceTransformer(folder, device="cpu", verify=False)
        assert model.runtime_info.preoptimized_file == "onnx/model.onnx.cpu"
    else:  # a damaged graph is still onnxruntime's clear load error, not a crash
        with pytest.raises(ValueError, match="Could not load ONNX model"):
            SentenceTransformer(folder, device="cpu", verify=False)


def test_a_missing_copy_falls_back_to_the_file(written):
    folder, _ = written
    (folder / "onnx" / "model.onnx.cpu").unlink()
    model = SentenceTransformer(folder, device="cpu")
    assert model.runtime_info.preoptimized_file is None and model.runtime_info.verified is True


def test_a_copy_that_disagrees_with_its_file_is_deleted_and_never_loaded(folder, monkeypatch):
    real = preoptimized.compare_sessions
    monkeypatch.setattr(
        preoptimized, "compare_sessions", lambda *a: dict(real(*a), min_cosine=0.5)
    )
    record = preoptimized.write_all(folder)["onnx/model.onnx"]
    assert record["passed"] is False and "min cosine 0.5" in record["error"]
    assert not (folder / "onnx" / "model.onnx.cpu").exists()
    assert not (folder / "onnx" / "model.onnx.cpu.data").exists()
    (folder / "onnx" / "model.onnx.cpu").write_bytes(b"left behind")  # even if a file of that name reappears
    assert SentenceTransformer(folder, device="cpu").runtime_info.preoptimized_file is None


def test_only_passed_cpu_files_get_a_copy(tmp_path):
    failed = _with_manifest(make_model(tmp_path / "failed"), passed=False)
    assert preoptimized.candidates(failed) == []
    with pytest.raises(ValueError, match="onnx/model.onnx is not a file .* that passed"):
        preoptimized.write_all(failed, ["onnx/model.onnx"])


def test_other_providers_and_backends_keep_the_file(written):
    folder, _ = written
    from lightembed.graphs.opener import GraphOptions, pick_companion

    model = SentenceTransformer(folder, device="cpu")
    assert model.runtime_info.preoptimized_file == "onnx/model.onnx.cpu"
    record, cuda = model._opened.record, GraphOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert pick_companion(folder, model.onnx_path, record, "onnx", cuda) is None
    assert pick_companion(folder, model.onnx_path, record, "onnx", GraphOptions()) is not None
    assert SentenceTransformer(folder, device="cpu", backend="openvino").runtime_info.preoptimized_file is None


def test_save_drops_the_record_of_a_copy_it_does_not_carry(written, tmp_path):
    folder, _ = written
    saved = tmp_path / "saved"
    SentenceTransformer(folder, device="cpu").save(saved)
    entry = json.loads((saved / MANIFEST_NAME).read_text())["files"][0]
    assert preoptimized.RECORD not in entry
    assert SentenceTransformer(saved, device="cpu").runtime_info.preoptimized_file is None


def test_pool_workers_run_the_copy(written):
    folder, _ = written
    model = SentenceTransformer(folder, device="cpu")
    from lightembed.pool import _model_state

    rebuilt = type(model).from_state(_model_state(model), "cpu", 1, False)
    assert rebuilt._graph.session.get_session_options().graph_optimization_level.name == "ORT_DISABLE_ALL"
    np.testing.assert_array_equal(rebuilt.encode(TEXTS), model.encode(TEXTS))


def test_cli_preoptimize_and_verify(folder):
    run = [sys.executable, "-m", "lightembed.cli"]
    done = subprocess.run([*run, "preoptimize", str(folder)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "onnx/model.onnx.cpu: ok" in done.stdout
    done = subprocess.run([*run, "verify", str(folder)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "onnx/model.onnx.cpu: ok (pre-optimized copy" in done.stdout
    data = folder / "onnx" / "model.onnx.cpu.data"
    data.write_bytes(data.read_bytes()[:-4] + b"oops")
    done = subprocess.run([*run, "verify", str(folder)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "model.onnx.cpu.data does not match" in done.stderr

"""Resolving Hub repo ids against a pre-filled local Hub cache, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import HIDDEN, make_model

ROOT = Path(__file__).resolve().parent.parent
MAIN = "a" * 40
OLD = "b" * 40


@pytest.fixture
def hub_cache(tmp_path):
    """A Hub cache holding org/tiny at two commits: main (mean pooling) and an older one (cls pooling)."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    main = make_model(repo / "snapshots" / MAIN)
    (main / "model.safetensors").write_bytes(b"torch weights must never be needed")
    old = repo / "snapshots" / OLD
    shutil.copytree(main, old)
    (old / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": HIDDEN, "pooling_mode": "cls"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1").write_text(OLD)
    return cache


def run_offline(cache: Path, code: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_repo_id_loads_from_cache_offline_and_revisions_pin(hub_cache):
    result = run_offline(
        hub_cache,
        "import json, numpy as np; from lightembed import SentenceTransformer as S\n"
        "m = S('org/tiny'); old = S('org/tiny', revision='v1'); pinned = S('org/tiny', revision='" + OLD + "')\n"
        "print(json.dumps({'dir': str(m.model_dir), 'old': str(old.model_dir), 'pinned': str(pinned.model_dir),"
        " 'a': m.encode('hello world').tolist(), 'b': old.encode('hello world').tolist(),"
        " 'pool': list(old.config.pooling.modes)}))",
    )
    assert result["dir"].endswith(MAIN) and result["old"].endswith(OLD) and result["pinned"].endswith(OLD)
    assert result["pool"] == ["cls"]
    assert not np.allclose(result["a"], result["b"])


def test_unknown_repo_offline_is_a_clear_error(hub_cache):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "from lightembed import SentenceTransformer as S; S('org/absent')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "FileNotFoundError" in proc.stderr and "org/absent" in proc.stderr


def test_cache_folder_argument_and_local_files_only(hub_cache):
    from lightembed import SentenceTransformer

    model = SentenceTransformer("org/tiny", cache_folder=str(hub_cache), local_files_only=True)
    assert model.model_dir.name == MAIN
    assert model.encode(["cat"]).shape == (1, HIDDEN)


def test_allow_patterns_exclude_torch_weights_and_other_onnx_files(monkeypatch, tmp_path):
    import huggingface_hub

    from lightembed import hub

    calls: list[dict] = []
    snapshot = make_model(tmp_path / "snap", onnx_path="onnx/model_O3.onnx")

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    folder, onnx = hub.resolve("org/x", file_name="model_O3.onnx", revision="r1")
    assert onnx == snapshot / "onnx" / "model_O3.onnx"
    (call,) = calls
    assert call["revision"] == "r1"
    patterns = call["allow_patterns"]
    assert "onnx/model_O3.onnx" in patterns and "onnx/model.onnx" not in patterns
    import fnmatch

    assert not any(fnmatch.fnmatch("model.safetensors", p) for p in patterns)
    assert not any(fnmatch.fnmatch("pytorch_model.bin", p) for p in patterns)
    assert any(fnmatch.fnmatch("2_Dense/model.safetensors", p) for p in patterns)
    assert any(fnmatch.fnmatch("tokenizer.json", p) for p in patterns)

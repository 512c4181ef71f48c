"""Loading from the Hub for real: huggingface_hub's own download code against a stand-in for the Hub's HTTP API on
127.0.0.1 (tests/hub_server.py), reached through HF_ENDPOINT. Configs, tokenizer and the one ONNX file (with its
external data) are fetched, nothing else; revisions pin; local_files_only reads the cache; a dropped download
resumes where it stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.hub_server import FakeHub, Repo
from tests.tiny import HIDDEN, make_model

ROOT = Path(__file__).resolve().parent.parent
MAIN = "c" * 40
OLD = "d" * 40
TEXTS = ["the cat sat on the mat", "hello world"]


def _external(folder: Path) -> None:
    """Rewrite the folder's onnx/model.onnx with its weights in onnx/model.onnx_data."""
    import onnx

    path = folder / "onnx" / "model.onnx"
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx_data", size_threshold=100)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-repos")
    main = make_model(root / "main")
    (main / "model.safetensors").write_bytes(b"torch weights: never downloaded")
    make_model(root / "other", onnx_path="onnx/model_O3.onnx")
    shutil.copy(root / "other" / "onnx" / "model_O3.onnx", main / "onnx" / "model_O3.onnx")
    old = root / "old"
    shutil.copytree(main, old)
    (old / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": HIDDEN, "pooling_mode": "cls"}))
    _external(main)
    tiny = Repo()
    tiny.add_commit(MAIN, main, branch="main")
    tiny.add_commit(OLD, old, branch="v1")
    with FakeHub() as server:
        server.repos["org/tiny"] = tiny
        yield server, {"main": main, "old": old}


def _load(server: FakeHub, cache: Path, code: str, prelude: str = "") -> dict:
    env = {
        **os.environ,
        "HF_ENDPOINT": server.endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "PYTHONPATH": str(ROOT),
    }
    # Online on purpose, whatever an earlier test left in os.environ: huggingface_hub reads TRANSFORMERS_OFFLINE
    # too (benchmarks/runners.py, imported by the benchmark smoke test, sets both).
    env["HF_HUB_OFFLINE"] = "0"
    env.pop("TRANSFORMERS_OFFLINE", None)
    head = "import json\nfrom lightembed import SentenceTransformer as S"
    script = f"{prelude}\n{head}\ncache = {str(cache)!r}\n{code}\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        return {"error": proc.stderr}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _local(folder: Path) -> list:
    from lightembed import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(TEXTS).tolist()


def test_downloads_only_what_runs_and_loads_external_data(hub, tmp_path):
    server, folders = hub
    server.log.clear()
    out = _load(
        server, tmp_path, f"m = S('org/tiny', cache_folder=cache)\nprint(json.dumps(m.encode({TEXTS!r}).tolist()))"
    )
    assert "error" not in out, out.get("error")
    np.testing.assert_allclose(out, _local(folders["main"]), rtol=1e-6)
    fetched = set(server.downloads())
    assert {"onnx/model.onnx", "onnx/model.onnx_data", "tokenizer.json", "modules.json"} <= fetched
    assert not fetched & {"model.safetensors", "onnx/model_O3.onnx"}


def test_revision_pins_and_local_files_only_reads_the_cache(hub, tmp_path):
    server, folders = hub
    out = _load(
        server,
        tmp_path,
        f"old = S('org/tiny', revision='v1', cache_folder=cache)\n"
        f"pinned = S('org/tiny', revision='{OLD}', cache_folder=cache)\n"
        "print(json.dumps({'dir': str(old.model_dir), 'pinned': str(pinned.model_dir),"
        f" 'emb': old.encode({TEXTS!r}).tolist()}}))",
    )
    assert "error" not in out, out.get("error")
    assert out["dir"].endswith(OLD) and out["pinned"].endswith(OLD)
    np.testing.assert_allclose(out["emb"], _local(folders["old"]), rtol=1e-6)
    before = len(server.log)
    cached = _load(
        server,
        tmp_path,
        f"m = S('org/tiny', revision='{OLD}', cache_folder=cache, local_files_only=True)\n"
        f"print(json.dumps(m.encode({TEXTS!r}).tolist()))",
    )
    assert "error" not in cached, cached.get("error")
    np.testing.assert_allclose(cached, out["emb"], rtol=1e-6)
    assert len(server.log) == before  # no request at all
    missing = _load(server, tmp_path / "empty", "S('org/tiny', cache_folder=cache, local_files_only=True)\nprint('{}')")
    assert "FileNotFoundError" in missing["error"] and "org/tiny" in missing["error"]


def test_dropped_download_resumes(hub, tmp_path):
    server, folders = hub
    server.log.clear()
    server.cut_once.add("org/tiny/onnx/model.onnx_data")
    code = f"m = S('org/tiny', cache_folder=cache)\nprint(json.dumps(m.encode({TEXTS!r}).tolist()))"
    # huggingface_hub writes what it received in 10 MiB chunks; small ones let the tiny file's first half land
    prelude = "import huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 128"
    result = _load(server, tmp_path, code, prelude)
    if "error" in result:  # huggingface_hub < 1: the drop surfaces, the partial file stays, the next load resumes
        result = _load(server, tmp_path, code, prelude)
    # (huggingface_hub >= 1 resumes within the same call)
    assert "error" not in result, result.get("error")
    np.testing.assert_allclose(result, _local(folders["main"]), rtol=1e-6)
    data_gets = [r for r in server.log if r.method == "GET" and r.path.endswith("onnx/model.onnx_data")]
    assert len(data_gets) == 2 and data_gets[0].range is None
    size = (folders["main"] / "onnx" / "model.onnx_data").stat().st_size
    assert data_gets[1].range == f"bytes={(size // 2) // 128 * 128}-"  # resumed where the dropped one stopped

"""deploy/build_and_test.py end to end on a tiny model: build the serving image on the local Debian base, embed a
sentence with --network=none, serve on a loopback port (healthcheck, non-root, HF_HUB_OFFLINE, a 4xx for bad
input), and run the same image as a Lambda container (awslambdaric in the image against the Runtime API
stand-in). The vectors must equal lightembed's on the host. Needs root and podman (deploy/host_setup.sh)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.lambda_runtime import RuntimeApi

pytestmark = pytest.mark.container
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "build_and_test.py"
SENTENCE = "A man is eating food."  # deploy/build_and_test.py's SENTENCE


def need_tools() -> None:
    missing = [t for t in ("podman", "buildah", "skopeo", "mmdebstrap") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: run `bash deploy/host_setup.sh` as root (scripts/setup.sh does)"
    assert os.geteuid() == 0, "the container test builds images as root (CI runs as root)"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.tiny import make_model

    need_tools()
    tmp = tmp_path_factory.mktemp("container")
    model = make_model(tmp / "tiny")
    out = tmp / "result.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(model), "--work", str(tmp / "work"),
                           "--model-name", "tiny", "--keep-images", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    yield model, result
    subprocess.run(["podman", "rmi", "-f", result["flavors"]["lightembed"]["image"]], capture_output=True)


def test_image_embeds_offline_and_serves(built):
    model, result = built
    row = result["flavors"]["lightembed"]
    want = SentenceTransformer(model, device="cpu").encode([SENTENCE])[0]
    np.testing.assert_allclose(row["offline_vector"], want, atol=1e-6)  # `encode` with --network=none
    np.testing.assert_allclose(row["vector"], want, atol=1e-6)  # POST /v1/embeddings on a loopback port
    assert row["bad_request_status"] == 422
    assert row["health_status"] == 200 and row["healthcheck_rc"] == 0 and "/health" in " ".join(row["healthcheck"])
    assert row["user"] == "10001:10001" and row["uid"] == "10001"
    assert row["env"] == ["HF_HUB_OFFLINE=1"]
    assert 0 < row["cold_start_s"] < 180
    assert 60 < row["uncompressed_mb"] and 0 < row["gzip_mb_without_base"] < row["gzip_mb"] < row["uncompressed_mb"]


def test_image_runs_as_a_lambda_container(built):
    """awslambdaric inside the image, host network (the stand-in listens on 127.0.0.1 only)."""
    model, result = built
    image = result["flavors"]["lightembed"]["image"]
    event = {"version": "2.0", "requestContext": {"http": {"method": "POST"}},
             "body": json.dumps({"input": [SENTENCE, "hello world"]}), "isBase64Encoded": False}
    bad = {"httpMethod": "POST", "body": "{not json"}
    name = f"lightembed-lambda-{os.getpid()}"
    with RuntimeApi([event, bad]) as api:
        proc = subprocess.Popen(
            ["podman", "run", "--rm", "--name", name, "--network=host", "-e", f"AWS_LAMBDA_RUNTIME_API={api.address}",
             "-e", "LIGHTEMBED_MODEL=/opt/model", "--entrypoint", "python3", image,
             "-m", "awslambdaric", "lightembed.serverless.lambda_handler"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        results = []
        try:
            deadline = time.monotonic() + 120
            while len(results) < 2 and time.monotonic() < deadline:
                try:
                    results.append(api.results.get(timeout=0.5))
                except Exception:  # noqa: BLE001 - queue.Empty: keep waiting until the deadline
                    assert proc.poll() is None, proc.stdout.read().decode()
        finally:
            subprocess.run(["podman", "stop", "-t", "2", name], capture_output=True, timeout=60)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert [r[0] for r in results] == ["response", "response"], results
    ok, err = results[0][2], results[1][2]
    assert ok["statusCode"] == 200
    got = np.array([d["embedding"] for d in json.loads(ok["body"])["data"]])
    want = SentenceTransformer(model, device="cpu").encode([SENTENCE, "hello world"], normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert err["statusCode"] == 422 and "not valid JSON" in err["body"]


def test_image_is_pruned_and_a_hub_id_is_a_clear_error(built):
    """deploy/prune.txt ran in the build stage: no Hub client, no onnxruntime C API library or offline tools, no
    NumPy tests; encode/serve above prove what is left suffices, and a Hub id fails cleanly, without a traceback."""
    _, result = built
    row = result["flavors"]["lightembed"]
    site, ort = set(row["site_packages"]), set(row["onnxruntime_files"])
    assert {"lightembed", "onnxruntime", "numpy", "tokenizers", "starlette", "uvicorn", "awslambdaric"} <= site
    assert not site & {"huggingface_hub", "hf_xet", "yaml", "fsspec", "google", "flatbuffers", "sympy"}, site
    assert "capi" in ort and not ort & {"tools", "quantization", "transformers", "datasets", "backend"}, ort
    assert row["hub_id_rc"] != 0 and "needs huggingface_hub" in row["hub_id_stderr"], row["hub_id_stderr"]
    assert "Traceback" not in row["hub_id_stderr"]

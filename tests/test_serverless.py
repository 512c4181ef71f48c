"""lightembed.serverless: the Lambda handler on API Gateway v1/v2, Function URL and direct events, the Cloud
Functions entry point served by functions-framework on loopback, and the real awslambdaric client against a
Runtime API stand-in. Answers are checked against SentenceTransformer.encode on the same tiny model."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.lambda_runtime import RuntimeApi

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "hello world"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from tests.tiny import make_model

    return make_model(tmp_path_factory.mktemp("sls") / "tiny")


@pytest.fixture
def serverless(model_dir, monkeypatch):
    monkeypatch.delenv("LIGHTEMBED_MODEL_NAME", raising=False)
    import lightembed.serverless as module

    module.load(str(model_dir))
    yield module
    module._models, module._load_error = None, None


def expected(model_dir: Path, texts: list[str], dim: int | None = None) -> np.ndarray:
    return SentenceTransformer(model_dir, device="cpu").encode(texts, normalize_embeddings=True, truncate_dim=dim)


def vectors(body: dict) -> np.ndarray:
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


def v1_event(body: str, method: str = "POST", b64: bool = False) -> dict:
    return {"resource": "/v1/embeddings", "path": "/v1/embeddings", "httpMethod": method,
            "headers": {"Content-Type": "application/json"}, "requestContext": {"stage": "prod"},
            "body": base64.b64encode(body.encode()).decode() if b64 else body, "isBase64Encoded": b64}


def v2_event(body: str, method: str = "POST", b64: bool = False) -> dict:
    """HTTP API (v2); a Function URL event has the same shape."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/embeddings", "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"domainName": "abc.lambda-url.us-east-1.on.aws",
                               "http": {"method": method, "path": "/v1/embeddings"}},
            "body": base64.b64encode(body.encode()).decode() if b64 else body, "isBase64Encoded": b64}


@pytest.mark.parametrize("make", [v1_event, v2_event], ids=["apigw-v1", "apigw-v2-or-function-url"])
@pytest.mark.parametrize("b64", [False, True], ids=["text", "base64"])
def test_http_events_answer_openai_embeddings(serverless, model_dir, make, b64):
    out = serverless.lambda_handler(make(json.dumps({"model": "tiny", "input": TEXTS}), b64=b64), None)
    assert out["statusCode"] == 200 and out["headers"]["Content-Type"] == "application/json"
    body = json.loads(out["body"])
    assert body["object"] == "list" and body["model"] == "tiny" and body["usage"]["prompt_tokens"] > 0
    np.testing.assert_allclose(vectors(body), expected(model_dir, TEXTS), atol=1e-6)


def test_direct_invoke_single_string_dimensions_and_base64(serverless, model_dir):
    body = serverless.lambda_handler({"input": TEXTS[2], "dimensions": 4, "encoding_format": "base64"}, None)
    assert len(body["data"]) == 1
    got = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(got, expected(model_dir, [TEXTS[2]], dim=4)[0], atol=1e-6)
    assert abs(np.linalg.norm(got) - 1) < 1e-5


def test_uses_the_servers_protocol_core(serverless, monkeypatch):
    from lightembed.server import protocol

    def refuse(*args, **kwargs):
        raise protocol.BadRequest("parsed by the shared core")

    monkeypatch.setattr(protocol, "parse_embeddings_request", refuse)
    out = serverless.lambda_handler(v2_event(json.dumps({"input": "x"})), None)
    assert out["statusCode"] == 400 and "parsed by the shared core" in out["body"]


BAD = [
    ("not an object", "not-a-dict", 400, "must be a JSON object"),
    ("no body", {"httpMethod": "POST", "path": "/"}, 400, "no body"),
    ("bad base64", {**v1_event("{}"), "body": "%%%", "isBase64Encoded": True}, 400, "not valid base64"),
    ("not JSON", v2_event("{input: nope"), 422, "not valid JSON"),
    ("JSON array", v1_event("[1, 2]"), 422, "must be a JSON object"),
    ("no input", v2_event('{"model": "tiny"}'), 422, "`input` is required"),
    ("input of numbers", v1_event('{"input": [1.5]}'), 422, "must be a string"),
    ("token ids", v1_event('{"input": [[1, 2]]}'), 400, "token ids"),
    ("empty input", v1_event('{"input": []}'), 422, "must not be empty"),
    ("unknown model", v2_event('{"model": "gpt", "input": "x"}'), 404, "not served here"),
    ("too many dimensions", v1_event('{"input": "x", "dimensions": 99}'), 422, "at most 8"),
    ("bad format", v1_event('{"input": "x", "encoding_format": "int8"}'), 422, "encoding_format"),
    ("PUT", v2_event('{"input": "x"}', method="PUT"), 405, "not allowed"),
]


@pytest.mark.parametrize("event,status,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_events_get_json_errors(serverless, event, status, words):
    out = serverless.lambda_handler(event, None)
    assert out["statusCode"] == status, out
    body = json.loads(out["body"])
    assert words in body["error"]["message"] and "Traceback" not in json.dumps(body)


def test_health_and_not_loaded(serverless, monkeypatch):
    out = serverless.lambda_handler(v2_event("", method="GET"), None)
    assert out["statusCode"] == 200 and json.loads(out["body"])["models"] == ["tiny"]
    serverless._models, serverless._load_error = None, None
    monkeypatch.delenv("LIGHTEMBED_MODEL", raising=False)
    serverless._init()
    out = serverless.lambda_handler(v1_event('{"input": "x"}'), None)
    assert out["statusCode"] == 503 and "LIGHTEMBED_MODEL is not set" in out["body"]


def test_model_is_loaded_at_import_from_env(model_dir, tmp_path):
    env = {**os.environ, "LIGHTEMBED_MODEL": str(model_dir), "LIGHTEMBED_MODEL_NAME": "served"}
    code = ("import sys; import lightembed.serverless as s; print(sorted(s._models)); "
            "print(s.lambda_handler({'input': 'hello'})['model']); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('torch', 'transformers', 'sentence_transformers', 'optimum', 'starlette', 'uvicorn', 'flask')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # loaded at import; nothing heavy and no web framework on the function's cold path
    assert out.stdout.split() == ["['served']", "served", "[]"]
    broken = subprocess.run([sys.executable, "-c", "import lightembed.serverless as s; "
                             "print(s.lambda_handler({'input': 'x'}))"],
                            env={**env, "LIGHTEMBED_MODEL": str(tmp_path / "missing")},
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 0 and "could not be loaded" in broken.stdout and "Traceback" not in broken.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_cloud_function_under_functions_framework(model_dir, tmp_path):
    cli = shutil.which("functions-framework", path=str(Path(sys.executable).parent)) or shutil.which(
        "functions-framework")
    assert cli, "functions-framework is not installed (scripts/setup.sh installs it)"
    (tmp_path / "main.py").write_text("from lightembed.serverless import cloud_function as embeddings\n")
    port = free_port()
    env = {**os.environ, "LIGHTEMBED_MODEL": str(model_dir)}
    proc = subprocess.Popen([cli, "--source", str(tmp_path / "main.py"), "--target", "embeddings",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):  # bounded: 60 s at most
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    assert json.loads(resp.read())["status"] == "ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
        else:
            pytest.fail("functions-framework did not answer within 60 s")
        status, body = post(url, json.dumps({"input": TEXTS}).encode())
        assert status == 200 and body["model"] == "tiny"
        np.testing.assert_allclose(vectors(body), expected(model_dir, TEXTS), atol=1e-6)
        status, body = post(url, b'{"input": 3}')
        assert status == 422 and "must be a string" in body["error"]["message"]
    finally:
        stop(proc)


def run_awslambdaric(events: list, model_dir: Path, timeout: float = 60) -> list:
    """Serve `events` to the real awslambdaric client running lightembed.serverless.lambda_handler; the results."""
    results = []
    with RuntimeApi(events) as api:
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address, "LIGHTEMBED_MODEL": str(model_dir)}
        proc = subprocess.Popen([sys.executable, "-m", "awslambdaric", "lightembed.serverless.lambda_handler"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while len(results) < len(events) and time.monotonic() < deadline:
                try:
                    results.append(api.results.get(timeout=0.5))
                except Exception:  # noqa: BLE001 - queue.Empty: keep waiting until the deadline
                    assert proc.poll() is None, proc.stdout.read().decode()
        finally:
            stop(proc)
    assert len(results) == len(events), f"got {results}"
    return results


def test_awslambdaric_client_against_runtime_api_stand_in(model_dir):
    events = [v2_event(json.dumps({"input": TEXTS})), v1_event('{"input": {"a": 1}}'), {"input": "hello world"}]
    (k1, id1, r1), (k2, id2, r2), (k3, id3, r3) = run_awslambdaric(events, model_dir)
    assert (k1, k2, k3) == ("response",) * 3 and (id1, id2, id3) == ("req-0", "req-1", "req-2")
    assert r1["statusCode"] == 200
    np.testing.assert_allclose(vectors(json.loads(r1["body"])), expected(model_dir, TEXTS), atol=1e-6)
    assert r2["statusCode"] == 422 and "must be a string or a list" in r2["body"]
    np.testing.assert_allclose(vectors(r3), expected(model_dir, ["hello world"]), atol=1e-6)


# ----- hostile events (issue 24) --------------------------------------------------------------------------------------
def test_a_lone_surrogate_is_422_not_500(serverless):
    status, body = serverless.respond(b'{"model": "tiny", "input": ["ok", "bad \\ud800 text"]}')
    assert status == 422 and "surrogate" in body["error"]["message"] and "input" in body["error"]["message"]


@pytest.mark.parametrize("context", ["x", {"http": "x"}, {"http": {"method": 5}}, None, ["a"]])
def test_a_malformed_request_context_does_not_raise_out_of_the_handler(serverless, context):
    event = {"requestContext": context, "body": json.dumps({"model": "tiny", "input": "a"})}
    out = serverless.lambda_handler(event, None)
    assert out["statusCode"] in (200, 400), out
    json.loads(out["body"])


def test_a_raw_surrogate_in_the_event_body_is_a_json_error(serverless):
    event = v2_event('{"model": "tiny", "input": "bad \ud800 text"}')
    out = serverless.lambda_handler(event, None)
    assert out["statusCode"] == 422 and "surrogate" in json.loads(out["body"])["error"]["message"]
    json.dumps(out)  # the whole answer can be sent back by the Lambda runtime


@pytest.mark.parametrize("flag, status", [("false", 200), ("False", 200), (False, 200), ("true", 400), ("yes", 400)])
def test_is_base64_encoded_as_a_string(serverless, flag, status):
    event = v2_event(json.dumps({"model": "tiny", "input": "a"}))
    event["isBase64Encoded"] = flag
    out = serverless.lambda_handler(event, None)
    assert out["statusCode"] == status, out  # "true" with a plain JSON body: not base64, a clear 400


def test_deeply_nested_json_is_422_in_both_handlers(serverless):
    nested = '{"input": ' + "[" * 20000 + "]" * 20000 + "}"
    out = serverless.lambda_handler(v1_event(nested), None)
    assert out["statusCode"] == 422 and "nested too deeply" in out["body"]

    class Request:
        method = "POST"

        def get_data(self, cache=False):
            return nested.encode()

    text, status, _ = serverless.cloud_function(Request())
    assert status == 422 and "nested too deeply" in text


def test_damaged_weights_are_a_500_naming_non_finite_output_never_a_vector(tmp_path, monkeypatch):
    import lightembed.serverless as module
    from tests.tiny import make_model, poison_weights

    folder = make_model(tmp_path / "nan")
    poison_weights(folder)
    monkeypatch.delenv("LIGHTEMBED_MODEL_NAME", raising=False)
    module.load(str(folder))
    try:
        out = module.lambda_handler(v1_event(json.dumps({"model": "nan", "input": ["the cat"]})), None)
        assert out["statusCode"] == 500 and "non-finite" in out["body"], out
    finally:
        module._models, module._load_error = None, None

"""`lightembed serve` as a real subprocess on a loopback port, driven by the real OpenAI client, huggingface_hub's
InferenceClient (a TEI client) and plain HTTP: results equal encode()/predict(), limits, key, metrics, SIGTERM."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import re
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

from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
from lightembed.activations import Identity
from tests.test_cross_encoder import make_ce
from tests.test_sparse_encoder import make_splade
from tests.tiny import make_model

KEY = "s3cret-key"
TEXTS = ["the cat sat on the mat", "hello", "a dog ran in the park fast", "red blue green", "big small", "query"]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `lightembed serve` subprocess; `url` is its base URL."""

    def __init__(self, args: list[str], env: dict | None = None, log_level: str = "warning") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightembed.cli", "serve", *args, "--port", str(self.port), "--log-level", log_level],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if http("GET", self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("server did not become healthy within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def http(method: str, url: str, body=None, key: str | None = None, raw: bytes | None = None, timeout: float = 30):
    """(status, headers, parsed JSON or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, headers, text = resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, headers, text = err.code, err.headers, err.read().decode()
    headers = {k.lower(): v for k, v in headers.items()}
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


def metric(server: Server, name: str, **labels: str) -> float:
    _, _, text = http("GET", server.url + "/metrics", key=KEY)
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def wait_until(condition, timeout: float = 20.0) -> None:
    """Poll `condition` every 20 ms; fail after `timeout` seconds (so a busy machine slows the test, not breaks it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def queued(server: Server, n: int) -> bool:
    return metric(server, "lightembed_queue_depth", model="emb") == n


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return {
        "emb": make_model(root / "emb", normalize=False, prompts={"query": "query ", "passage": ""}),
        "ce": make_ce(root / "ce"),
        "splade": make_splade(root / "splade"),
    }


@pytest.fixture(scope="module")
def server(folders):
    srv = Server([
        f"{folders['emb']}=emb", f"{folders['ce']}=rr", f"{folders['splade']}=sparse",
        "--api-key", KEY, "--max-batch-items", "4", "--batch-wait-ms", "20",
        "--max-inputs", "16", "--max-chars", "300", "--max-body-bytes", "8192",
    ])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(folders):
    return {
        "emb": SentenceTransformer(folders["emb"]),
        "ce": CrossEncoder(folders["ce"]),
        "splade": SparseEncoder(folders["splade"]),
    }


# ----- results equal the library's ----------------------------------------------------------------------------
def test_openai_client_gets_encode_vectors_in_order_float_and_base64(server, local):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    want = local["emb"].encode(TEXTS, normalize_embeddings=True)
    res = client.embeddings.create(model="emb", input=TEXTS, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in res.data]), want, rtol=1e-5, atol=1e-6)
    assert [d.index for d in res.data] == list(range(len(TEXTS)))
    res = client.embeddings.create(model="emb", input=TEXTS, encoding_format="base64")  # asked for: left encoded
    got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in res.data])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    res = client.embeddings.create(model="emb", input=TEXTS)  # the client's default (base64, decoded by it)
    np.testing.assert_allclose(np.array([d.embedding for d in res.data]), want, rtol=1e-5, atol=1e-6)
    tokens = sum(len(e.ids) for e in local["emb"].tokenize_inputs(TEXTS))
    assert res.usage.prompt_tokens == tokens == res.usage.total_tokens
    res = client.embeddings.create(model="emb", input=TEXTS, dimensions=3)
    got = np.array([d.embedding for d in res.data])
    np.testing.assert_allclose(got, local["emb"].encode(TEXTS, truncate_dim=3, normalize_embeddings=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_base64_decodes_to_the_float_answer(server):
    body = {"model": "emb", "input": TEXTS}
    _, _, floats = http("POST", server.url + "/v1/embeddings", body, KEY)
    _, _, b64 = http("POST", server.url + "/v1/embeddings", {**body, "encoding_format": "base64"}, KEY)
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]]
    np.testing.assert_array_equal(np.stack(decoded), np.array([d["embedding"] for d in floats["data"]], dtype=np.float32))


def test_huggingface_inference_client_is_a_tei_client_here(server, local):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server.url, api_key=KEY)
    got = client.feature_extraction("the cat sat on the mat")
    np.testing.assert_allclose(got[0], local["emb"].encode("the cat sat on the mat", normalize_embeddings=True), rtol=1e-5, atol=1e-6)
    got = client.feature_extraction("a dog", normalize=False, prompt_name="query")
    np.testing.assert_allclose(got[0], local["emb"].encode("a dog", prompt_name="query"), rtol=1e-5, atol=1e-6)


def test_tei_embed_normalize_false_dimensions_and_a_request_larger_than_a_batch(server, local):
    texts = TEXTS * 2  # 12 inputs, batches of at most 4: split and put back together
    status, _, got = http("POST", server.url + "/embed", {"inputs": texts, "normalize": False}, KEY)
    assert status == 200
    np.testing.assert_allclose(np.array(got), local["emb"].encode(texts), rtol=1e-5, atol=1e-6)
    _, _, got = http("POST", server.url + "/embed", {"inputs": texts, "dimensions": 5}, KEY)
    np.testing.assert_allclose(np.array(got), local["emb"].encode(texts, truncate_dim=5, normalize_embeddings=True), rtol=1e-5, atol=1e-6)


def test_rerank_routes_equal_cross_encoder_predict(server, local):
    query, docs = "the cat", ["a dog ran", "the cat sat on the mat", "hello world", "red"]
    want = local["ce"].predict([(query, d) for d in docs])
    raw = local["ce"].predict([(query, d) for d in docs], activation_fn=Identity())
    status, _, got = http("POST", server.url + "/rerank", {"query": query, "texts": docs, "return_text": True}, KEY)
    assert status == 200
    assert [g["index"] for g in got] == list(np.argsort(-want, kind="stable"))
    for g in got:
        assert g["score"] == pytest.approx(float(want[g["index"]]), rel=1e-5) and g["text"] == docs[g["index"]]
    _, _, got = http("POST", server.url + "/rerank", {"query": query, "texts": docs, "raw_scores": True}, KEY)
    assert {g["index"]: g["score"] for g in got} == pytest.approx(dict(enumerate(raw.tolist())), rel=1e-5)
    body = {"model": "rr", "query": query, "documents": [docs[0], {"text": docs[1]}, *docs[2:]], "top_n": 2, "return_documents": True}
    status, _, got = http("POST", server.url + "/v1/rerank", body, KEY)
    assert status == 200 and len(got["results"]) == 2
    best = int(np.argmax(want))
    assert got["results"][0] == {"index": best, "relevance_score": pytest.approx(float(want[best]), rel=1e-5), "document": {"text": docs[best]}}


def test_embed_sparse_equals_sparse_encoder(server, local):
    status, _, got = http("POST", server.url + "/embed_sparse", {"inputs": TEXTS}, KEY)
    assert status == 200
    want = local["splade"].encode(TEXTS)
    for row, vec in zip(got, want):
        assert {d["index"]: d["value"] for d in row} == pytest.approx(vec.to_dict(), rel=1e-5)


def test_concurrent_clients_get_their_own_results_and_share_batches(server, local):
    texts = [f"{a} {b}" for a in ("the cat", "a dog", "red", "hello") for b in ("sat", "ran", "blue", "fast", "park")]
    before = metric(server, "lightembed_batch_size_count", model="emb")

    def one(text: str):
        return http("POST", server.url + "/embed", {"inputs": text, "normalize": False}, KEY)[2][0]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        got = list(pool.map(one, texts))
    np.testing.assert_allclose(np.array(got), local["emb"].encode(texts), rtol=1e-5, atol=1e-6)
    batches = metric(server, "lightembed_batch_size_count", model="emb") - before
    assert 5 <= batches < len(texts)  # at most 4 per batch, and requests were merged


# ----- models, routes, key, errors --------------------------------------------------------------------------------
def test_models_info_and_health(server):
    assert http("GET", server.url + "/health")[0] == 200  # open without a key
    _, _, models = http("GET", server.url + "/v1/models", key=KEY)
    assert {m["id"]: m["kind"] for m in models["data"]} == {"emb": "embed", "rr": "rerank", "sparse": "sparse"}
    _, _, info = http("GET", server.url + "/info", key=KEY)
    assert info["model_id"] == "emb" and info["max_batch_requests"] == 4 and info["max_client_batch_size"] == 16
    assert [m["class"] for m in info["models"]] == ["SentenceTransformer", "CrossEncoder", "SparseEncoder"]


def test_api_key_is_required_and_compared(server):
    for key in (None, "wrong", KEY + "x"):
        status, headers, body = http("POST", server.url + "/embed", {"inputs": "a"}, key)
        assert status == 401 and body["error_type"] == "Unauthorized"
    status, _, body = http("POST", server.url + "/v1/embeddings", {"input": "a", "model": "emb"}, "wrong")
    assert status == 401 and "API key" in body["error"]["message"]
    assert http("POST", server.url + "/embed", {"inputs": "a"}, KEY)[0] == 200


@pytest.mark.parametrize(
    "path, body, raw, status, words",
    [
        ("/v1/embeddings", None, b"{not json", 422, "not valid JSON"),
        ("/v1/embeddings", {"model": "emb", "input": 5}, None, 422, "`input` must be a string"),
        ("/v1/embeddings", {"model": "emb", "input": [[1, 2]]}, None, 400, "token ids"),
        ("/v1/embeddings", {"model": "gpt", "input": "a"}, None, 404, "'gpt' is not served"),
        ("/v1/embeddings", {"model": "rr", "input": "a"}, None, 400, "'rr' is a CrossEncoder"),
        ("/v1/embeddings", {"model": "emb", "input": ["a"] * 17}, None, 413, "at most 16"),
        ("/v1/embeddings", {"model": "emb", "input": "a" * 301}, None, 413, "at most 300"),
        ("/v1/embeddings", None, b'{"input": "' + b"a" * 9000 + b'"}', 413, "8192"),
        ("/v1/rerank", {"query": "a", "documents": "b"}, None, 422, "`documents` must be"),
        ("/embed", {"inputs": ["a", 3]}, None, 422, "`inputs[1]` must be a string"),
        ("/embed", {"inputs": "a", "normalize": "yes"}, None, 422, "`normalize` must be true or false"),
        ("/embed", {"inputs": "a", "prompt_name": "nope"}, None, 422, "'nope' not found"),
        ("/embed", {"inputs": "the cat sat on the mat a dog ran in the park", "truncate": False}, None, 413, "longer than"),
        ("/embed", None, b'{"inputs": "bad \\ud800 text"}', 422, "lone surrogate"),
        ("/rerank", {"query": "a", "texts": ["b"], "model": "emb"}, None, 400, "'emb' is a SentenceTransformer"),
        ("/embed_sparse", {"inputs": "a", "model": "rr"}, None, 400, "cannot answer /embed_sparse"),
        ("/nowhere", {"inputs": "a"}, None, 404, "No route /nowhere"),
    ],
)
def test_bad_requests_get_their_status_and_a_message_in_the_routes_shape(server, path, body, raw, status, words):
    got, _, answer = http("POST", server.url + path, body, KEY, raw=raw)
    assert got == status, answer
    message = answer["error"]["message"] if path.startswith("/v1/") else answer["error"]
    assert words in message and "Traceback" not in message
    if not path.startswith("/v1/"):
        assert answer["error_type"]


def test_a_bad_input_fails_only_its_own_request(server, local):
    def bad():
        return http("POST", server.url + "/embed", raw=b'{"inputs": ["ok", "\\udc80"]}', key=KEY)

    def good():
        return http("POST", server.url + "/embed", {"inputs": ["the cat"], "normalize": False}, KEY)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: f(), [bad, good, bad, good]))
    assert [r[0] for r in results] == [422, 200, 422, 200]
    np.testing.assert_allclose(results[1][2][0], local["emb"].encode("the cat"), rtol=1e-5, atol=1e-6)


def server_timing(headers: dict) -> dict[str, float]:
    """The Server-Timing header's durations by name (milliseconds)."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+);dur=([\d.]+)", headers["server-timing"])}


def test_every_answer_carries_server_timing(server):
    _, headers, _ = http("POST", server.url + "/embed", {"inputs": ["the cat sat"]}, KEY)
    timing = server_timing(headers)
    assert set(timing) == {"read", "tokenize", "infer", "total"}
    assert 0 < timing["read"] + timing["tokenize"] + timing["infer"] <= timing["total"]
    _, headers, _ = http("GET", server.url + "/health")
    assert set(server_timing(headers)) == {"total"}  # no body to read


def test_metrics_move(server):
    before = {
        "requests": metric(server, "lightembed_requests_total", route="/embed", status="200"),
        "tokens": metric(server, "lightembed_tokens_total", model="emb"),
        "inferred": metric(server, "lightembed_inputs_inferred_total", model="emb"),
        "latency": metric(server, "lightembed_request_duration_seconds_count", route="/embed"),
    }
    http("POST", server.url + "/embed", {"inputs": ["the cat sat", "a dog"]}, KEY)
    assert metric(server, "lightembed_requests_total", route="/embed", status="200") == before["requests"] + 1
    assert metric(server, "lightembed_tokens_total", model="emb") == before["tokens"] + 5 + 4
    assert metric(server, "lightembed_inputs_inferred_total", model="emb") == before["inferred"] + 2
    assert metric(server, "lightembed_request_duration_seconds_count", route="/embed") == before["latency"] + 1
    _, _, text = http("GET", server.url + "/metrics", key=KEY)
    assert 'lightembed_queue_depth{model="emb"}' in text and "lightembed_batch_padded_tokens_bucket" in text


# ----- queue, timeout, disconnect, SIGTERM --------------------------------------------------------------------------
def test_full_queue_429_and_timeout_503(folders):
    # Batches wait 3 s for company, so requests sit in the queue long enough to be observed.
    srv = Server([f"{folders['emb']}=emb", "--batch-wait-ms", "3000", "--max-queue", "2", "--request-timeout", "1"])
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(http, "POST", srv.url + "/embed", {"inputs": ["a", "b"]})
            wait_until(lambda: queued(srv, 2), timeout=0.9)
            status, headers, body = http("POST", srv.url + "/embed", {"inputs": "c"})
            assert status == 429 and int(headers["retry-after"]) >= 1 and body["error_type"] == "Overloaded"
            status, first_headers, body = first.result()
        assert status == 503 and "timeout" in body["error"]
        # Server-Timing tells the server's own share: the second it waited for its timeout, not the client's view
        assert 900 <= server_timing(first_headers)["total"] < 5000
        assert 0 <= server_timing(first_headers)["read"] <= server_timing(first_headers)["total"]
        assert server_timing(headers)["total"] < 900  # the 429 came at once
        status, _, body = http("POST", srv.url + "/v1/embeddings", {"input": "d"})  # the queue is free again
        assert status == 503 and body["error"]["type"] == "timeout"
    finally:
        srv.stop()


def test_a_client_that_leaves_before_its_batch_costs_no_inference(folders):
    srv = Server([f"{folders['emb']}=emb", "--batch-wait-ms", "1500"])  # timeout (30 s) far beyond the wait
    try:
        inferred = metric(srv, "lightembed_inputs_inferred_total", model="emb")  # the warm-up's input
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            payload = json.dumps({"inputs": ["x", "y"]}).encode()
            sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            wait_until(lambda: queued(srv, 2), timeout=1.2)
        wait_until(lambda: queued(srv, 0))
        time.sleep(2.0)  # past the batch window
        assert metric(srv, "lightembed_inputs_inferred_total", model="emb") == inferred
        assert http("POST", srv.url + "/embed", {"inputs": ["x", "y"]})[0] == 200  # a client that stays is answered
        assert metric(srv, "lightembed_inputs_inferred_total", model="emb") == inferred + 2
    finally:
        srv.stop()


def test_sigterm_drains_in_flight_refuses_new_and_exits_0(folders, local):
    srv = Server([f"{folders['emb']}=emb", "--batch-wait-ms", "2000", "--drain-timeout", "10"])
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(http, "POST", srv.url + "/embed", {"inputs": ["the cat"], "normalize": False})
            wait_until(lambda: queued(srv, 1), timeout=0.9)
            srv.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: http("GET", srv.url + "/health")[0] == 503, timeout=0.9)
            status, _, body = http("POST", srv.url + "/embed", {"inputs": "a"})
            assert status == 503 and "shutting down" in body["error"]
            status, _, got = in_flight.result()
        assert status == 200
        np.testing.assert_allclose(got[0], local["emb"].encode("the cat"), rtol=1e-5, atol=1e-6)
        start = time.monotonic()
        assert srv.proc.wait(12) == 0
        assert time.monotonic() - start < 12
    finally:
        srv.stop()


# ----- the command line ---------------------------------------------------------------------------------------------
def test_model_kinds_are_detected_and_names_parsed(folders):
    from lightembed.server.loading import ModelSpec, model_kind

    assert [model_kind(folders[k]) for k in ("emb", "ce", "splade")] == ["embed", "rerank", "sparse"]
    assert ModelSpec.parse("/models/minilm=small") == ModelSpec("/models/minilm", "small")
    assert ModelSpec.parse("/models/minilm/") == ModelSpec("/models/minilm/", "minilm")
    assert ModelSpec.parse("org/model") == ModelSpec("org/model", "model")


def test_every_flag_has_an_environment_variable(monkeypatch):
    from lightembed.server.run import parser

    monkeypatch.setenv("LIGHTEMBED_PORT", "9123")
    monkeypatch.setenv("LIGHTEMBED_API_KEY", "k")
    monkeypatch.setenv("LIGHTEMBED_MAX_QUEUE", "7")
    monkeypatch.setenv("LIGHTEMBED_NO_BATCHING", "1")
    args = parser().parse_args(["m"])
    assert (args.port, args.api_key, args.max_queue, args.no_batching) == (9123, "k", 7, True)
    flags = [a.dest for a in parser()._actions if a.option_strings and a.dest != "help"]
    for dest in flags:
        monkeypatch.delenv("LIGHTEMBED_" + dest.upper(), raising=False)
    defaults = parser().parse_args(["m"])
    for dest in flags:  # each default is read from LIGHTEMBED_<FLAG>
        default = getattr(defaults, dest)
        monkeypatch.setenv("LIGHTEMBED_" + dest.upper(), "1" if isinstance(default, bool) else "7")
    args = parser().parse_args(["m"])
    unchanged = [d for d in flags if getattr(args, d) == getattr(defaults, d)]
    assert not unchanged, f"flags without an environment variable: {unchanged}"


def test_bad_model_folder_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lightembed.cli", "serve", str(tmp_path / "missing")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "lightembed serve: error:" in out.stderr and "Traceback" not in out.stderr


def test_a_path_to_an_onnx_file_serves_that_file(tmp_path):
    import shutil

    from lightembed.server.loading import ModelSpec, load_model

    folder = make_model(tmp_path / "m", normalize=False)
    shutil.copy(folder / "onnx" / "model.onnx", folder / "onnx" / "model_other.onnx")
    spec = ModelSpec.parse(str(folder / "onnx" / "model_other.onnx"))
    assert spec.name == "m"
    kind, model = load_model(spec)
    assert kind == "embed" and model.runtime_info.onnx_file == "onnx/model_other.onnx"

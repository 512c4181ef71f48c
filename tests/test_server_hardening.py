"""`lightembed serve` against hostile and broken clients, on a loopback port with raw sockets: request smuggling,
slow and silent clients, big headers, connection floods, cross-site posts, keys, shutdown with a stalled upload,
aborted uploads, deeply nested JSON, routes of a kind not served, non-finite model output, the log."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_server import KEY, ROOT, Server, http, metric, wait_until
from tests.tiny import make_model

PARSERS = ["h11", "httptools"]


@pytest.fixture(scope="module")
def emb_folder(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("hard") / "emb", normalize=False)


@pytest.fixture(scope="module", params=PARSERS)
def server(request, emb_folder):
    srv = Server([f"{emb_folder}=emb", "--http", request.param, "--header-timeout", "1", "--body-timeout", "1",
                  "--max-header-bytes", "4096"])
    yield srv
    srv.stop()


def raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Everything the server sends back on one connection for `data`, until it closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


def response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers and Content-Length body) read from `sock`."""
    out = b""
    while b"\r\n\r\n" not in out:
        out += sock.recv(65536)
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def post(path: str, body: bytes, headers: str = "Content-Type: application/json\r\n") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


# ----- framing and connections ---------------------------------------------------------------------------------
def test_content_length_with_transfer_encoding_is_refused_and_nothing_hidden_runs(server):
    hidden = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"inputs": "a"}'
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" + hidden
    request = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n".encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    out = raw(server.port, request)
    assert out.startswith(b"HTTP/1.1 400")
    assert out.count(b"HTTP/1.1 ") == 1  # the smuggled second request got no answer: it never ran


def test_headers_that_do_not_arrive_in_time_close_the_connection(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server (a timeout here would raise)
        assert time.monotonic() - start < 9


def test_a_body_that_does_not_arrive_in_time_is_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        answer = response(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer


def test_headers_over_the_cap_are_431(server):
    out = raw(server.port, post("/embed", b'{"inputs": "a"}', "Content-Type: application/json\r\nX-Big: "
                                + "a" * 8000 + "\r\n"))
    assert out.startswith(b"HTTP/1.1 431")
    # a large body is not mistaken for large headers
    body = {"inputs": ["the cat sat"] * 600}
    assert len(json.dumps(body)) > 4096
    status, _, got = http("POST", server.url + "/embed", body)
    assert status == 200 and len(got) == 600


def test_connections_beyond_the_cap_get_503(emb_folder):
    srv = Server([f"{emb_folder}=emb", "--max-connections", "3"])
    socks = []
    try:
        for _ in range(3):
            socks.append(socket.create_connection(("127.0.0.1", srv.port)))
        time.sleep(0.2)
        out = raw(srv.port, post("/embed", b'{"inputs": "a"}'))
        assert out.startswith(b"HTTP/1.1 503")
        for s in socks:
            s.close()
        wait_until(lambda: http("POST", srv.url + "/embed", {"inputs": "a"})[0] == 200)
    finally:
        for s in socks:
            s.close()
        srv.stop()


# ----- content type, keys ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", ["Content-Type: text/plain\r\n", "Content-Type: application/x-www-form-urlencoded\r\n", ""])
def test_a_body_not_declared_json_is_415(server, headers):
    out = raw(server.port, post("/embed", b'{"inputs": "a"}', headers))
    assert out.startswith(b"HTTP/1.1 415") and b"application/json" in out


def test_json_with_a_charset_is_accepted(server):
    out = raw(server.port, post("/embed", b'{"inputs": "a"}', "Content-Type: application/json; charset=utf-8\r\n"
                                + "Connection: close\r\n"))
    assert out.startswith(b"HTTP/1.1 200")


def test_an_empty_api_key_is_refused_at_start(emb_folder):
    for args, env in (([], {"LIGHTEMBED_API_KEY": ""}), (["--api-key", " "], {})):
        out = subprocess.run([sys.executable, "-m", "lightembed.cli", "serve", str(emb_folder), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, env={**__import__("os").environ, **env})
        assert out.returncode == 2 and "empty" in out.stderr, out.stderr


def test_two_authorization_headers_are_refused(emb_folder):
    srv = Server([f"{emb_folder}=emb", "--api-key", KEY])
    try:
        auth = f"Authorization: Bearer {KEY}\r\n"
        ok = raw(srv.port, post("/embed", b'{"inputs": "a"}', "Content-Type: application/json\r\nConnection: close\r\n" + auth))
        assert ok.startswith(b"HTTP/1.1 200")
        two = raw(srv.port, post("/embed", b'{"inputs": "a"}', "Content-Type: application/json\r\n"
                                 + "Authorization: Bearer wrong\r\n" + auth))
        assert two.startswith(b"HTTP/1.1 401") and b"2 Authorization headers" in two
    finally:
        srv.stop()


# ----- shutdown, aborts, logs ---------------------------------------------------------------------------------------
def test_shutdown_with_a_stalled_upload_takes_no_more_than_the_drain_timeout(emb_folder):
    srv = Server([f"{emb_folder}=emb", "--drain-timeout", "3", "--body-timeout", "60"])
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.3)
            start = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.wait(20)
            took = time.monotonic() - start
        assert took < 3 + 2  # the drain timeout plus uvicorn's close; before: twice the drain timeout
    finally:
        srv.stop()


def test_aborted_uploads_log_no_traceback_and_are_not_500s(emb_folder):
    srv = Server([f"{emb_folder}=emb"], log_level="info")
    try:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"inputs\": ")
                time.sleep(0.05)
        wait_until(lambda: metric(srv, "lightembed_requests_total", route="/embed", status="499") == 5)
        assert metric(srv, "lightembed_requests_total", route="/embed", status="500") == 0
        assert http("POST", srv.url + "/embed", {"inputs": "a"})[0] == 200
    finally:
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(20)
        log = srv.proc.stdout.read()
        srv.stop()
    assert "Traceback" not in log and "Unexpected failure" not in log
    # the ready line and a timestamped access log line
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* INFO: +ready: emb \(embed\)", log, re.M), log
    assert re.search(r"^\d{4}-\d\d-\d\dT\S+ INFO: .*\"POST /embed HTTP/1.1\" 200", log, re.M), log


# ----- bodies -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings", "/rerank"])
def test_deeply_nested_json_is_422(server, path):
    nested = b'{"inputs": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    status, _, body = http("POST", server.url + path, raw=nested)
    assert status == 422, body
    assert "nested too deeply" in json.dumps(body)


@pytest.mark.parametrize("path, body", [
    ("/rerank", {"query": "a", "texts": ["b"]}),
    ("/v1/rerank", {"query": "a", "documents": ["b"]}),
    ("/embed_sparse", {"inputs": "a"}),
])
def test_a_route_for_a_model_kind_not_served_is_400(server, path, body):
    status, _, answer = http("POST", server.url + path, body)
    assert status == 400, answer
    assert "is served here" in json.dumps(answer)


def test_non_finite_model_output_is_an_error_and_health_turns_unhealthy(tmp_path):
    import onnx
    from onnx import numpy_helper

    folder = make_model(tmp_path / "nan", normalize=False)
    (folder / "lightembed.json").unlink(missing_ok=True)
    graph_path = folder / "onnx" / "model.onnx"
    graph = onnx.load(str(graph_path))
    for i, init in enumerate(graph.graph.initializer):
        if init.name == "E":
            emb = numpy_helper.to_array(init).copy()
            emb[-1] = np.nan  # the last word of the vocabulary ("small") is damaged
            graph.graph.initializer[i].CopyFrom(numpy_helper.from_array(emb, "E"))
    onnx.save(graph, str(graph_path))
    srv = Server([f"{folder}=emb"])
    try:
        assert http("POST", srv.url + "/embed", {"inputs": "the cat"})[0] == 200
        for body, path in (({"inputs": ["the cat", "big small"]}, "/embed"),
                           ({"input": ["big small"], "model": "emb", "encoding_format": "base64"}, "/v1/embeddings")):
            status, _, answer = http("POST", srv.url + path, body)
            assert status == 500 and "non-finite" in json.dumps(answer), answer
        status, _, health = http("GET", srv.url + "/health")
        assert status == 503 and health["status"] == "unhealthy"
    finally:
        srv.stop()


@pytest.mark.parametrize("parser", PARSERS)
def test_a_pipelined_request_that_runs_longer_than_the_header_timeout_is_answered(emb_folder, parser):
    # The second request's headers arrive with the first; it then waits 1.5 s for its batch (> --header-timeout 1).
    srv = Server([f"{emb_folder}=emb", "--header-timeout", "1", "--batch-wait-ms", "1500", "--http", parser])
    try:
        one = post("/embed", b'{"inputs": "a"}')
        out = raw(srv.port, one + one[:-1].replace(b"Host: x", b"Host: x\r\nConnection: close") + one[-1:], wait=10)
        assert out.count(b"HTTP/1.1 200") == 2, out
    finally:
        srv.stop()

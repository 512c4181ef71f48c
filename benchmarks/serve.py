"""Load test of `lightembed serve` on loopback: dynamic batching on vs off, against in-process encode().

    python -m benchmarks.serve --model work/minilm [--clients 64] [--requests 8] [--out FILE.json]
    python -m benchmarks.serve --model work/minilm --reranker work/minilm-ce --threads-test
    python -m benchmarks.serve --model work/minilm --cold-start 5
    python -m benchmarks.serve --model work/minilm --overload 90 [--clients 64]
    python -m benchmarks.serve --model work/minilm --burst 100

Bounded: a fixed number of requests, then it stops. Each server mode is a fresh `lightembed serve` subprocess on
127.0.0.1. Scenarios, on the same real texts (benchmarks/corpus.py `mixed`, or `short_queries` with
`--corpus short`):
- `C clients x 1 text`: C concurrent clients (one keep-alive connection each), each sending `--requests` requests
  of one text to /v1/embeddings;
- `1 client x 64 texts`: the same texts, 64 per request, one client;
- in-process `encode(batch_size=32)` on the same texts (no server).
Every response is checked against its request (each vector against in-process encode(normalize=True) of its own
text, within `answer_tolerance`: 1e-4 max abs difference where the model runs in float32, cosine >= 0.9999 where
it runs in bf16, as OpenVINO does by default on AMX-BF16 CPUs); any error or mismatch is counted and reported. Reports texts/s, request latency p50/p99 and the server's
peak RSS (VmHWM).

`--overload SECONDS` is issue 24's mixed load against the server's own admission (default --max-queue and
--request-timeout): C closed-loop clients for SECONDS, each request one text, or with probability 10% 128 long
paragraphs (corpus.long_paragraphs); a client told 429 waits its Retry-After (at most 5 s). Reported: answers by
status, how fast refusals came (429 p99/max ms), p50/p99 of the one-text and of the large requests answered 200,
Retry-After seen, and the inference thrown away (inputs run that no answered request used, from /metrics).

`--burst N` is issue 24's burst: N requests of 64 mixed texts each (corpus.mixed) sent at once, each on its own
connection, to a fresh server with its defaults. Reported: answers by status, each status's time to answer
(max ms), the Retry-After seen, and whether every 200 answered correctly.

`--threads-test` serves an embedder and a reranker in one process and keeps both busy at once (C/2 clients each),
with each model's onnxruntime pool at 1 thread, and at all usable cores with spinning off and on, to see
whether the pools fight (interleaved --rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import mixed, short_queries
from benchmarks.system import machine, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, models: list[str], extra: list[str], env: dict | None = None, queue: bool = True) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightembed.cli", "serve", *models, "--port", str(self.port),
             "--log-level", "warning", *(["--max-queue", "100000"] if queue else []), *extra],
            cwd=ROOT, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.proc.kill()
        raise SystemExit("server not healthy within 120 s")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: dict | bytes,
                headers: dict | None = None) -> tuple[int, bytes]:
    """POST `body` (a dict, or JSON already encoded); (status, body bytes); the response headers go into `headers`
    when given."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode() + data
    )
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if headers is not None:
            headers[name.strip().lower()] = value.strip()
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _client(port: int, jobs: list[tuple[str, dict, Any]], out: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path, body, check in jobs:
            start = time.perf_counter()
            try:
                status, raw = await _post(reader, writer, path, body)
                ok = status == 200 and check(json.loads(raw))
            except (OSError, ValueError, asyncio.IncompleteReadError):
                ok = False
            out.append((time.perf_counter() - start, ok))
    finally:
        writer.close()


def run_clients(port: int, per_client: list[list[tuple[str, dict, Any]]]) -> dict:
    """Run every client's jobs concurrently; texts/s is filled in by the caller."""
    out: list = []

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*[_client(port, jobs, out) for jobs in per_client])
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    lat = sorted(t for t, _ in out)
    return {
        "seconds": seconds,
        "requests": len(out),
        "errors": sum(1 for _, ok in out if not ok),
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


def answer_tolerance(model: Any) -> dict:
    """How close the server's vectors must be to in-process encode() of the same texts, for the precision
    `model` (the in-process model, loaded as the server loads it) runs in.

    The two run the same file on the same backend, but not in the same batches: the server gathers texts of
    other requests and plans batches under --max-batch-tokens, so a text is padded to other lengths and rows.
    In float32 that changes a vector only by float rounding (< 1e-6), so 1e-4 max abs difference is kept. In bf16
    (lightembed.graphs.policy's automatic choice of OpenVINO on AMX-BF16 CPUs) the rounding depends on the
    batch's shape: the same text differs by up to ~1e-3 between batches, in one process, with no server involved
    (all-MiniLM-L6-v2, 96 short queries, AMX-BF16 CPU: encode() at max_batch_tokens 2048 against 256, or each text
    alone: max abs difference 7.5e-4, min cosine 0.99999; on onnxruntime float32: 3e-8), so the bar is the one the
    backend was chosen with, cosine >= policy.AUTO_MIN_COSINE to the in-process vector."""
    from lightembed.graphs.policy import AUTO_MIN_COSINE

    providers = " ".join(model.runtime_info.providers)
    if "bf16" in providers or "f16" in providers:
        return {"precision": providers, "min_cosine": AUTO_MIN_COSINE}
    return {"precision": providers, "max_abs": 1e-4}


def embed_check(expected: np.ndarray, tolerance: dict):
    def check(answer: dict) -> bool:
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in answer["data"]])
        if got.shape != expected.shape:
            return False
        if "min_cosine" in tolerance:  # both sides are unit length
            return float((got * expected).sum(axis=1).min()) >= tolerance["min_cosine"]
        return float(np.abs(got - expected).max()) <= tolerance["max_abs"]

    return check


def embedding_jobs(texts: list[str], expected: np.ndarray, per_request: int, clients: int, tolerance: dict) -> list[list]:
    jobs = []
    for start in range(0, len(texts), per_request):
        body = {"model": "emb", "input": texts[start : start + per_request], "encoding_format": "base64"}
        jobs.append(("/v1/embeddings", body, embed_check(expected[start : start + per_request], tolerance)))
    return [jobs[c::clients] for c in range(clients)]


def cold_start(model: str, rounds: int) -> dict:
    """Seconds from starting `lightembed serve MODEL` to the first answered /v1/embeddings request (polled every
    10 ms), median of `rounds` fresh processes; beside it, a process that only imports the app, and one that loads
    the model with the library and encodes one sentence (no server), on the same machine at the same time."""
    body = json.dumps({"model": "emb", "input": "a cold start"}).encode()
    times = []
    for _ in range(rounds):
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "lightembed.cli", "serve", f"{model}=emb", "--port", str(port),
                                 "--log-level", "warning"], cwd=ROOT)
        try:
            while True:
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    raise SystemExit("server did not answer")
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings", data=body,
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=5) as r:
                        if r.status == 200 and json.loads(r.read())["data"]:
                            break
                except OSError:
                    time.sleep(0.01)
            times.append(time.perf_counter() - start)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(40)
    floor = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lightembed.server.app"], check=True, cwd=ROOT)
        floor.append(time.perf_counter() - start)
    library = []
    code = "import sys\nfrom lightembed import SentenceTransformer\nSentenceTransformer(sys.argv[1]).encode('a cold start')"
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, model], check=True, cwd=ROOT)
        library.append(time.perf_counter() - start)
    return {"serve_to_first_answer_s": statistics.median(times), "runs": times,
            "import_server_app_s": statistics.median(floor),
            "process_load_encode_one_s": statistics.median(library)}


def server_timing(header: str) -> dict[str, float]:
    """`read;dur=1.2, total;dur=3.4` -> {"read": 1.2, "total": 3.4} (milliseconds)."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


# Words of the batcher's refusal before tokenizing (Batcher.reserve), which tell it from one after tokenizing.
UNTOKENIZED = b"at least"


def _by_status(out: list[dict]) -> dict[str, int]:
    """Answers by HTTP status."""
    return {str(k): sum(1 for r in out if r["status"] == k) for k in sorted({r["status"] for r in out})}


def _retry_range(out: list[dict]) -> list[int] | None:
    """[min, max] of the Retry-After seconds seen, or None."""
    retry = [int(r["retry_after"]) for r in out if r["retry_after"]]
    return [min(retry), max(retry)] if retry else None


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def overload(model: str, clients: int, seconds: float, extra: list[str]) -> dict:
    """Issue 24's mixed load for `seconds` (bounded: each client stops sending at the end, answers are awaited)."""
    import random

    from benchmarks.corpus import long_paragraphs
    from lightembed import SentenceTransformer

    short = short_queries(256, seed=5)
    longs = long_paragraphs(128, seed=6)
    if len(longs) < 128:
        longs = (longs * (128 // max(1, len(longs)) + 1))[:128]
    local = SentenceTransformer(model)
    want_short = local.encode(short, normalize_embeddings=True)
    want_long = local.encode(longs, normalize_embeddings=True)
    tolerance = answer_tolerance(local)
    del local
    server = Server([f"{model}=emb"], extra, queue=False)
    out: list[dict] = []
    # Encoded once: serializing 128 paragraphs on the clients' own loop (which shares the cores with the server)
    # is load-generator time, not the server's answer time.
    long_body = json.dumps({"model": "emb", "input": longs, "encoding_format": "base64"}).encode()

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                big = rng.random() < 0.1
                if big:
                    texts, want = longs, want_long
                else:
                    i = rng.randrange(len(short))
                    texts, want = short[i : i + 1], want_short[i : i + 1]
                headers: dict = {}
                body = long_body if big else json.dumps({"model": "emb", "input": texts, "encoding_format": "base64"}).encode()
                start = time.perf_counter()
                try:
                    status, raw = await _post(reader, writer, "/v1/embeddings", body, headers)
                except ConnectionError:  # an idle keep-alive connection the server closed (after a Retry-After wait)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    start = time.perf_counter()
                    status, raw = await _post(reader, writer, "/v1/embeddings", body, headers)
                took = time.perf_counter() - start
                ok = status != 200 or embed_check(want, tolerance)(json.loads(raw))
                out.append({"big": big, "status": status, "s": took, "ok": ok,
                            "server": server_timing(headers.get("server-timing", "")),
                            "retry_after": headers.get("retry-after"),
                            "late": status == 429 and b"no longer finish" in raw,
                            "untokenized": status == 429 and UNTOKENIZED in raw})
                if headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                if status == 429:
                    await asyncio.sleep(min(5.0, float(headers.get("retry-after") or 1)))
        finally:
            writer.close()

    def metric(name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    try:
        inferred0 = metric("lightembed_inputs_inferred_total")

        async def main() -> None:
            await asyncio.gather(*[client(c) for c in range(clients)])

        asyncio.run(main())
        inferred = metric("lightembed_inputs_inferred_total") - inferred0
        rss = server.peak_rss_mib()
    finally:
        server.stop()
    used = sum(128 if r["big"] else 1 for r in out if r["status"] == 200)
    refusals = [1000 * r["s"] for r in out if r["status"] == 429]
    server_refusals = [r["server"]["total"] for r in out if r["status"] == 429 and "total" in r["server"]]
    late_small = [1000 * r["s"] for r in out if r["status"] == 429 and not r["big"]]
    one = [1000 * r["s"] for r in out if r["status"] == 200 and not r["big"]]
    large = [1000 * r["s"] for r in out if r["status"] == 200 and r["big"]]
    return {
        "scenario": f"overload: {clients} clients, {seconds:g} s, 10% of requests 128 long texts",
        "requests": len(out), "by_status": _by_status(out), "wrong_answers": sum(1 for r in out if not r["ok"]),
        "answer_check": tolerance,
        "refusal_ms_p99": _pct(refusals, 0.99), "refusal_ms_max": max(refusals, default=None),
        "refusals_over_100ms": sum(1 for ms in refusals if ms > 100),
        # The server's own view (Server-Timing: from the request's headers to its answer): the rest of a slow
        # refusal is time before the server parsed the headers, or the load generator's own.
        "refusal_server_ms_p99": _pct(server_refusals, 0.99), "refusal_server_ms_max": max(server_refusals, default=None),
        "refusal_read_ms_max": max((r["server"].get("read", 0.0) for r in out if r["status"] == 429), default=None),
        "refusal_tokenize_ms_max": max((r["server"].get("tokenize", 0.0) for r in out if r["status"] == 429),
                                       default=None),
        # refused by the bound on their text (batcher.reserve), before tokenizing; and how slow the others were
        "refusals_untokenized": sum(1 for r in out if r["untokenized"]),
        "refusals_over_100ms_untokenized": sum(1 for r in out if r["untokenized"] and r["s"] > 0.1),
        "late_refusals": sum(1 for r in out if r["late"]),
        "one_text_refusals": len(late_small), "one_text_refusal_ms_max": max(late_small, default=None),
        "large_by_status": {str(k): sum(1 for r in out if r["big"] and r["status"] == k)
                            for k in sorted({r["status"] for r in out if r["big"]})},
        "one_text_ms_p50": _pct(one, 0.5), "one_text_ms_p99": _pct(one, 0.99),
        "large_ms_p50": _pct(large, 0.5), "large_ms_p99": _pct(large, 0.99),
        "retry_after_s_min_max": _retry_range(out),
        "inputs_inferred": inferred, "inputs_answered": used,
        "inference_thrown_away": (inferred - used) / inferred if inferred else 0.0, "peak_rss_mib": rss,
    }


def burst(model: str, n: int, extra: list[str]) -> dict:
    """Issue 24's burst: `n` requests of 64 mixed texts each, all sent at once on their own connections."""
    from lightembed import SentenceTransformer

    texts = mixed(64 * n, seed=9)
    local = SentenceTransformer(model)
    want = local.encode(texts, normalize_embeddings=True)
    tolerance = answer_tolerance(local)
    del local
    server = Server([f"{model}=emb"], extra, queue=False)
    bodies = [json.dumps({"model": "emb", "input": texts[64 * i : 64 * (i + 1)], "encoding_format": "base64"}).encode()
              for i in range(n)]
    out: list[dict] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        headers: dict = {}
        start = time.perf_counter()
        try:
            status, raw = await _post(reader, writer, "/v1/embeddings", bodies[i], headers)
        finally:
            writer.close()
        took = time.perf_counter() - start
        ok = status != 200 or embed_check(want[64 * i : 64 * (i + 1)], tolerance)(json.loads(raw))
        out.append({"status": status, "s": took, "ok": ok, "retry_after": headers.get("retry-after"),
                    "server": server_timing(headers.get("server-timing", "")),
                    "untokenized": status == 429 and UNTOKENIZED in raw})

    async def main() -> None:
        await asyncio.gather(*[one(i) for i in range(n)])

    try:
        asyncio.run(main())
    finally:
        server.stop()
    statuses = sorted({r["status"] for r in out})
    return {
        "scenario": f"burst: {n} requests x 64 mixed texts at once", "by_status": _by_status(out),
        "max_ms_by_status": {str(k): 1000 * max(r["s"] for r in out if r["status"] == k) for k in statuses},
        # the server's view (Server-Timing total; read: the body read and parsed), slowest of each status
        "server_max_ms_by_status": {str(k): max(r["server"].get("total", 0.0) for r in out if r["status"] == k)
                                    for k in statuses},
        "server_read_max_ms": max((r["server"].get("read", 0.0) for r in out), default=None),
        "refusals_untokenized": sum(1 for r in out if r["untokenized"]),
        "refusal_max_ms_tokenized": max((1000 * r["s"] for r in out if r["status"] == 429 and not r["untokenized"]),
                                        default=None),
        "wrong_answers": sum(1 for r in out if not r["ok"]), "answer_check": tolerance,
        "retry_after_s_min_max": _retry_range(out),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Median texts/s, p50 and p99 and the largest peak RSS of each (scenario, mode) over the rounds; errors
    summed."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["mode"]), []).append(r)

    def med(rs: list[dict], key: str) -> float | None:
        values = [r[key] for r in rs if r[key] is not None]
        return statistics.median(values) if values else None

    return [
        {"scenario": s, "mode": m, "rounds": len(rs), "texts_per_s": med(rs, "texts_per_s"), "p50_ms": med(rs, "p50_ms"),
         "p99_ms": med(rs, "p99_ms"), "errors": sum(r["errors"] for r in rs),
         "peak_rss_mib": max((r["peak_rss_mib"] for r in rs if r["peak_rss_mib"] is not None), default=None)}
        for (s, m), rs in groups.items()
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--reranker", help="a CrossEncoder folder, for --threads-test")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=8, help="requests per client")
    ap.add_argument("--corpus", choices=("mixed", "short"), default="mixed",
                    help="mixed: corpus.mixed (10%% long paragraphs); short: corpus.short_queries (sentences up to 80 chars)")
    ap.add_argument("--http-compare", action="store_true", help="each mode with uvicorn's h11 and httptools parsers")
    ap.add_argument("--threads-test", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the server modes")
    ap.add_argument("--batch-tokens", type=int, nargs="+", default=[256],
                    help="--max-batch-tokens of the batching-on modes (one server each)")
    ap.add_argument("--cold-start", type=int, metavar="ROUNDS", help="only measure cold start, median of ROUNDS")
    ap.add_argument("--overload", type=float, metavar="SECONDS", help="only the mixed overload load, for SECONDS")
    ap.add_argument("--burst", type=int, metavar="N", help="only the burst: N requests of 64 texts at once")
    ap.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[],
                    help="with --overload or --burst: more `lightembed serve` flags (last on the line)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.overload or args.burst:
        scenario = overload(args.model, args.clients, args.overload, args.serve_args) if args.overload else (
            burst(args.model, args.burst, args.serve_args))
        result = {"machine": machine(), **scenario}
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return 1 if result["wrong_answers"] else 0
    if args.cold_start:
        result = {"machine": machine(), **cold_start(args.model, args.cold_start)}
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return 0

    from lightembed import SentenceTransformer

    n = args.clients * args.requests
    texts = mixed(n, seed=3) if args.corpus == "mixed" else short_queries(n, seed=3)
    local = SentenceTransformer(args.model)
    local.encode(texts[:32])
    start = time.perf_counter()
    expected = local.encode(texts, batch_size=32, normalize_embeddings=True)
    in_process = time.perf_counter() - start
    tolerance = answer_tolerance(local)
    del local
    report: dict[str, Any] = {"machine": machine(), "texts": len(texts), "args": vars(args), "answer_check": tolerance,
                              "rows": []}
    report["rows"].append({"scenario": "in-process encode(batch_size=32)", "mode": "-", "texts_per_s": len(texts) / in_process,
                           "p50_ms": None, "p99_ms": None, "errors": 0, "peak_rss_mib": None})

    if not args.threads_test:
        modes = [(f"batching on, {t} tokens", ["--max-batch-tokens", str(t)]) for t in args.batch_tokens]
        modes.append(("batching off", ["--no-batching"]))
        if args.http_compare:
            modes = [(f"{mode}, {http}", [*extra, "--http", http]) for mode, extra in modes for http in ("h11", "httptools")]
        for mode, extra in modes * args.rounds:
            server = Server([f"{args.model}=emb"], extra)
            try:
                for scenario, per_request, clients in (
                    (f"{args.clients} clients x 1 text", 1, args.clients),
                    ("1 client x 64 texts", 64, 1),
                ):
                    res = run_clients(server.port, embedding_jobs(texts, expected, per_request, clients, tolerance))
                    report["rows"].append({"scenario": scenario, "mode": mode, "texts_per_s": len(texts) / res["seconds"],
                                           **{k: res[k] for k in ("p50_ms", "p99_ms", "errors")}, "peak_rss_mib": None})
                report["rows"][-1]["peak_rss_mib"] = report["rows"][-2]["peak_rss_mib"] = server.peak_rss_mib()
            finally:
                server.stop()
    else:
        if not args.reranker:
            raise SystemExit("--threads-test needs --reranker")
        from lightembed import CrossEncoder

        query = "what happened in the news"
        ce = CrossEncoder(args.reranker)
        scores = ce.predict([(query, t) for t in texts])
        del ce

        def rerank_check(idx: list[int]):
            def check(answer: list) -> bool:
                return len(answer) == len(idx) and all(abs(a["score"] - float(scores[idx[a["index"]]])) <= 1e-4 for a in answer)

            return check

        half = args.clients // 2
        cores = str(usable_cores())
        variants = [("1", "0"), (cores, "0"), (cores, "1")] * args.rounds  # interleaved rounds
        for threads, spinning in variants:
            server = Server([f"{args.model}=emb", f"{args.reranker}=rr"], ["--threads", threads],
                            {"LIGHTEMBED_SPINNING": spinning})
            try:
                emb = embedding_jobs(texts, expected, 1, half, tolerance)
                rr = []
                for start in range(0, len(texts), 4):
                    idx = list(range(start, min(start + 4, len(texts))))
                    rr.append(("/rerank", {"model": "rr", "query": query, "texts": [texts[i] for i in idx]}, rerank_check(idx)))
                rr_clients = [rr[c::half] for c in range(half)]
                res = run_clients(server.port, emb + rr_clients)
                report["rows"].append({"scenario": f"embed ({half} clients x 1 text) + rerank ({half} clients x 4 docs) at once",
                                       "mode": f"--threads {threads}, spin {'on' if spinning == '1' else 'off'}", "texts_per_s": 2 * len(texts) / res["seconds"],
                                       **{k: res[k] for k in ("p50_ms", "p99_ms", "errors")}, "peak_rss_mib": server.peak_rss_mib()})
            finally:
                server.stop()

    print(f"{'scenario':<62} {'mode':<36} {'texts/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'peak RSS MiB':>12}")
    for r in report["rows"]:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        print(f"{r['scenario']:<62} {r['mode']:<36} {r['texts_per_s']:>8.1f} {fmt(r['p50_ms'], '8.1f')} "
              f"{fmt(r['p99_ms'], '8.1f')} {r['errors']:>6} {fmt(r['peak_rss_mib'], '12.0f')}")
    summary = summarize(report["rows"])
    report["summary"] = summary
    print(f"\nmedian over {args.rounds} interleaved round(s):")
    for r in summary:
        print(f"{r['scenario']:<62} {r['mode']:<36} {r['texts_per_s']:>8.1f} {r['p50_ms'] or 0:>8.1f} "
              f"{r['p99_ms'] or 0:>8.1f} {r['errors']:>6} {r['peak_rss_mib'] or 0:>12.0f}")
    print(json.dumps(report["machine"]))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    errors = sum(r["errors"] for r in report["rows"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

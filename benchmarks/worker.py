"""Child process for measurements that need a fresh interpreter; prints one JSON line on stdout.

    python -m benchmarks.worker coldstart le_fp32 ONNX_DIR TORCH_DIR
    python -m benchmarks.worker rss le_fp32 ONNX_DIR TORCH_DIR CORPUS.jsonl
    python -m benchmarks.worker latency le_fp32 ONNX_DIR TORCH_DIR QUERIES.json

Imports only what the measured library needs (numpy and the stdlib besides).
"""

from __future__ import annotations

import json
import resource
import sys
import time

T0 = time.perf_counter()


def _rss_mb() -> float:
    """Current resident set size from /proc (MB)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mb() -> float:
    """Peak resident set size of this process (MB): /proc VmHWM, which starts afresh at exec.

    getrusage's ru_maxrss is not used: on Linux it is inherited from the parent across fork and exec, so a child
    of a big harness process would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux; see above


def main(argv: list[str]) -> int:
    from pathlib import Path

    mode, key, onnx_dir, torch_dir = argv[:4]
    from benchmarks.runners import ModelPaths, make_runner

    runner = make_runner(key, ModelPaths(Path(onnx_dir), Path(torch_dir)))
    out: dict = {"key": key, "mode": mode, "harness_import_s": time.perf_counter() - T0}
    reason = runner.unavailable()
    if reason:
        out["skipped"] = reason
        print(json.dumps(out))
        return 0
    rss_start = _rss_mb()
    # a cold start or a memory figure is what a user's process sees: no waiting for a background hand-over
    runner.settle = mode not in ("coldstart", "rss")
    t = time.perf_counter()
    runner.import_library()
    out["import_s"] = time.perf_counter() - t
    rss_imported = _rss_mb()
    t = time.perf_counter()
    runner._load()
    out["load_s"] = time.perf_counter() - t
    out["rss_loaded_mb"] = _rss_mb()
    if mode == "coldstart":
        t = time.perf_counter()
        emb = runner.encode(["A man is eating food."])
        out["encode_s"] = time.perf_counter() - t
        out["dim"] = int(emb.shape[-1])
    elif mode == "rss":
        from benchmarks.make_corpus import read_corpus

        texts = read_corpus(Path(argv[4]))
        out["rss_start_mb"] = rss_start
        out["rss_imported_mb"] = rss_imported
        out["peak_before_encode_mb"] = _peak_mb()
        t = time.perf_counter()
        emb = runner.encode(texts)
        out["encode_s"] = time.perf_counter() - t
        out["n_texts"] = len(texts)
        out["rss_after_mb"] = _rss_mb()
        out["dim"] = int(emb.shape[-1])
    elif mode == "latency":
        from benchmarks.latency import time_single_queries

        queries = json.loads(Path(argv[4]).read_text())
        out["times_s"] = time_single_queries(runner, queries)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out["peak_rss_mb"] = _peak_mb()
    out["in_process_s"] = time.perf_counter() - T0
    print(json.dumps(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

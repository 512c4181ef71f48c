"""Batch-1 latency: one short query per encode() call, each runner in its own fresh process (as a service holds
one model), the processes interleaved across runners in `rounds` so a noisy stretch of a shared machine does not
land on one runner only. p50/p99 over all calls of all rounds.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.runners import ModelPaths, Runner

LATENCY_KEYS = ("le_fp32", "le_quint8", "le_qint8", "le_static", "st_torch", "fe_fp32")
WARMUP = 10


def time_single_queries(runner: Runner, queries: Sequence[str], warmup: int = WARMUP) -> list[float]:
    """Seconds of each encode([query]) call on a loaded runner, after `warmup` untimed calls."""
    for query in list(queries[:warmup]) or list(queries[:1]):
        runner.encode([query])
    times = []
    for query in queries:
        started = time.perf_counter()
        runner.encode([query])
        times.append(time.perf_counter() - started)
    return times


def summarize(ms: np.ndarray, rounds: int) -> dict:
    return {
        "n": len(ms),
        "rounds": rounds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
    }


def measure_latency(
    paths: ModelPaths,
    keys: Sequence[str],
    queries: Sequence[str],
    rounds: int = 2,
    echo: Callable[[str], None] = print,
) -> dict[str, dict]:
    """{key: p50/p99/mean/min ms}: `rounds` fresh processes per runner, each timing its share of the queries."""
    from benchmarks.subprocesses import run_worker

    rounds = max(1, min(rounds, len(queries)))
    blocks = [list(b) for b in np.array_split(np.array(queries, dtype=object), rounds)]
    times: dict[str, list[float]] = {k: [] for k in keys}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lightembed-latency-") as tmp:
        for round_no, block in enumerate(blocks):
            block_file = Path(tmp) / f"queries_{round_no}.json"
            block_file.write_text(json.dumps(block))
            shift = round_no % max(len(keys), 1)
            for key in list(keys[shift:]) + list(keys[:shift]):
                if key in skipped:
                    continue
                out, _ = run_worker(["latency", key, str(paths.onnx_dir), str(paths.torch_dir), str(block_file)])
                if "skipped" in out or "error" in out:
                    skipped[key] = out.get("skipped") or out["error"]
                    echo(f"[latency] SKIP {key}: {skipped[key]}")
                    continue
                times[key] += out["times_s"]
                ms = np.array(out["times_s"]) * 1000
                echo(f"[latency] round {round_no + 1}/{rounds} {key:<12} p50 {np.percentile(ms, 50):7.2f} ms "
                     f"p99 {np.percentile(ms, 99):7.2f} ms ({len(ms)} queries)")
    results: dict[str, dict] = {}
    for key in keys:
        if key in skipped:
            results[key] = {"skipped": skipped[key]}
        elif times[key]:
            results[key] = summarize(np.array(times[key]) * 1000, rounds)
    return results

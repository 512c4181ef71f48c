"""Cold start and peak memory: each measurement in a brand-new Python process (benchmarks.worker).

Cold start = wall time from spawning the interpreter to its exit, for a process that imports the library, loads
the model and encodes one sentence; repeated, median. Peak RSS = the peak resident set size (VmHWM) of a process
that loads the model and encodes the whole RSS corpus (one process per library).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.paths import REPO_DIR
from benchmarks.runners import ModelPaths

COLDSTART_KEYS = (
    "le_fp32", "le_fp32_plain", "le_quint8", "le_qint8", "le_qint8_plain", "le_default", "st_torch", "fe_fp32",
    "fe_qint8", "bare_fp32", "bare_qint8",
)  # fmt: skip
RSS_KEYS = ("le_fp32", "le_quint8", "le_qint8", "st_torch", "st_onnx_fp32", "fe_fp32", "fe_fp32_256")


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    # Bytecode as an installed package has it: pip compiles site-packages (fastembed, onnxruntime) at install, while
    # this checkout's lightembed is imported from source; with PYTHONDONTWRITEBYTECODE set (as on the development
    # machines) it was compiled again in every fresh process, ~90 ms of every lightembed cold start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_worker(args: Sequence[str], timeout: float = 1800) -> tuple[dict, float]:
    """Run benchmarks.worker with `args`; return (its JSON, wall seconds from spawn to exit)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", *args],
        cwd=REPO_DIR,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}"}, wall
    return json.loads(lines[-1]), wall


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure_coldstart(
    paths: ModelPaths, keys: Sequence[str], repeats: int, echo: Callable[[str], None] = print
) -> dict[str, dict]:
    """{key: {wall_s (median), import_s, load_s, encode_s (medians), runs, skipped/error}}; runs interleaved."""
    raw: dict[str, list[tuple[dict, float]]] = {k: [] for k in keys}
    skipped: dict[str, str] = {}
    for round_no in range(repeats):
        for key in keys:
            if key in skipped:
                continue
            out, wall = run_worker(["coldstart", key, str(paths.onnx_dir), str(paths.torch_dir)])
            if "skipped" in out or "error" in out:
                skipped[key] = out.get("skipped") or out["error"]
                echo(f"[coldstart] SKIP {key}: {skipped[key]}")
                continue
            raw[key].append((out, wall))
            echo(
                f"[coldstart] round {round_no + 1}/{repeats} {key:<12} {wall:6.2f} s "
                f"(import {out['import_s']:.2f}, load {out['load_s']:.2f}, encode {out['encode_s']:.3f})"
            )
    results: dict[str, dict] = {}
    for key in keys:
        if key in skipped:
            results[key] = {"skipped": skipped[key]}
            continue
        runs = raw[key]
        results[key] = {
            "wall_s": _median([w for _, w in runs]),
            "wall_all_s": [round(w, 3) for _, w in runs],
            "import_s": _median([o["import_s"] for o, _ in runs]),
            "load_s": _median([o["load_s"] for o, _ in runs]),
            "encode_s": _median([o["encode_s"] for o, _ in runs]),
            "rss_loaded_mb": _median([o["rss_loaded_mb"] for o, _ in runs]),
            "runs": len(runs),
        }
    return results


def measure_rss(
    paths: ModelPaths, keys: Sequence[str], corpus: Path, echo: Callable[[str], None] = print
) -> dict[str, dict]:
    """{key: worker JSON (peak_rss_mb, rss_loaded_mb, encode_s ...)} from one fresh process per library."""
    results: dict[str, dict] = {}
    for key in keys:
        out, wall = run_worker(["rss", key, str(paths.onnx_dir), str(paths.torch_dir), str(corpus)])
        if "skipped" in out or "error" in out:
            results[key] = {"skipped": out.get("skipped") or out["error"]}
            echo(f"[rss] SKIP {key}: {results[key]['skipped']}")
            continue
        out["wall_s"] = wall
        results[key] = out
        echo(
            f"[rss] {key:<12} peak {out['peak_rss_mb']:7.0f} MB (after load {out['rss_loaded_mb']:.0f} MB; "
            f"{out['n_texts']} texts in {out['encode_s']:.1f} s)"
        )
    return results

"""Serverless handlers side by side: init time (import + model load, as Lambda's init phase does it) and warm
latency of one query through the handler, for lightembed.serverless (fp32 and int8) and the same handler written
with sentence-transformers (CPU torch, the checkpoint) and with fastembed (fp32 and the same int8 file).

    python -m benchmarks.serverless --model work/minilm --int8 onnx/model_qint8_avx512_vnni.onnx \\
        --checkpoint SRC [--inits 3] [--calls 50] [--json benchmarks/serverless_results/run.json]

Each init is a fresh process; the rows run interleaved (round-robin) so a load change on a shared machine hits
them alike. Warm latency: `lambda_handler(event, None)` on an API Gateway v2 event holding one headline, after
3 warm-up calls. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_APP = ROOT / "deploy" / "compare" / "baseline_app.py"
QUERY = "Government announces new plan to cut energy bills"


def event(text: str) -> dict:
    return {"version": "2.0", "requestContext": {"http": {"method": "POST"}},
            "body": json.dumps({"input": text}), "isBase64Encoded": False}


def worker(kind: str, calls: int) -> dict:
    """In a fresh process (env set by the parent): import + load, then `calls` warm handler calls."""
    t0 = time.perf_counter()
    if kind == "lightembed":
        from lightembed.serverless import lambda_handler
    else:
        spec = importlib.util.spec_from_file_location("baseline_app", BASELINE_APP)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        lambda_handler = module.lambda_handler
    init = time.perf_counter() - t0
    ev = event(QUERY)
    for _ in range(3):
        out = lambda_handler(ev, None)
    assert out["statusCode"] == 200, out
    dim = len(json.loads(out["body"])["data"][0]["embedding"])
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        lambda_handler(ev, None)
        times.append(time.perf_counter() - t)
    return {"init_s": init, "warm_ms": [x * 1000 for x in times], "dim": dim}


def rows(model: Path, int8: str, checkpoint: Path) -> dict[str, tuple[str, dict[str, str]]]:
    le = {"LIGHTEMBED_MODEL": str(model)}
    fe = {"BASELINE_BACKEND": "fastembed", "BASELINE_MODEL": str(model)}
    return {
        "lightembed fp32": ("lightembed", {**le, "LIGHTEMBED_FILE_NAME": "onnx/model.onnx"}),
        "lightembed int8": ("lightembed", {**le, "LIGHTEMBED_FILE_NAME": int8}),
        "sentence-transformers (torch fp32)": ("baseline", {"BASELINE_BACKEND": "sentence-transformers",
                                                            "BASELINE_MODEL": str(checkpoint)}),
        "fastembed fp32": ("baseline", {**fe, "BASELINE_ONNX_FILE": "onnx/model.onnx"}),
        "fastembed int8": ("baseline", {**fe, "BASELINE_ONNX_FILE": int8}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help="exported folder (fp32 onnx/model.onnx and the int8 file)")
    ap.add_argument("--int8", default="onnx/model_qint8_avx512_vnni.onnx")
    ap.add_argument("--checkpoint", type=Path, help="the sentence-transformers folder the export came from")
    ap.add_argument("--inits", type=int, default=3, help="fresh processes per row")
    ap.add_argument("--calls", type=int, default=50, help="warm calls per process")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.calls)))
        return 0
    if not (args.model and args.checkpoint):
        ap.error("--model and --checkpoint are required")
    sys.path.insert(0, str(ROOT))
    from benchmarks.system import machine, versions

    plan = rows(args.model.resolve(), args.int8, args.checkpoint.resolve())
    runs: dict[str, list[dict]] = {name: [] for name in plan}
    for _ in range(args.inits):
        for name, (kind, env) in plan.items():
            proc = subprocess.run([sys.executable, "-m", "benchmarks.serverless", "--worker", kind,
                                   "--calls", str(args.calls)], cwd=ROOT, env={**os.environ, **env,
                                   "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"{name}: {proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = ["| handler | init (import + load), median s | warm latency, median ms | p90 ms |",
             "|---|---:|---:|---:|"]
    summary = {}
    for name, rs in runs.items():
        warm = sorted(x for r in rs for x in r["warm_ms"])
        row = {"init_s": statistics.median(r["init_s"] for r in rs), "init_all_s": [r["init_s"] for r in rs],
               "warm_median_ms": statistics.median(warm), "warm_p90_ms": warm[int(0.9 * (len(warm) - 1))],
               "dim": rs[0]["dim"]}
        summary[name] = row
        table.append(f"| {name} | {row['init_s']:.2f} | {row['warm_median_ms']:.1f} | {row['warm_p90_ms']:.1f} |")
    result = {"command": "python -m benchmarks.serverless " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine(), "versions": versions(), "query": QUERY, "inits": args.inits,
              "calls": args.calls, "rows": summary}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 13, part 3: what a cold load of the graph costs, and what saving it pre-optimized would save.

Each variant runs in a fresh Python process (imports included, page cache warm), the variants interleaved,
`--repeats` times; median wall time from process start to the first embedding of one text.

- ort_onnx: onnxruntime session on model.onnx with ORT_ENABLE_ALL (what lightembed does today);
- ort_preoptimized: the same graph saved after onnxruntime's optimization (optimized_model_filepath, extended
  level, portable across CPUs) and loaded with optimization off;
- ort_format: the same saved in onnxruntime's ORT format (.ort) and loaded with optimization off;
- ov_compile: OpenVINO reads and compiles model.onnx (bf16 on AMX);
- ov_cached: the same with OpenVINO's model cache (CACHE_DIR) already filled by an earlier run;
- tokenizers alone, as the floor every variant pays.

    .venv/bin/python -m benchmarks.coldstart_graph --model-dir work/minilm_ov [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import write_json
from benchmarks.system import load_average, machine

CHILD = r"""
import sys, time
start = time.perf_counter()
kind, model_dir, graph, cache = sys.argv[1:5]
import numpy as np
from tokenizers import Tokenizer
tok = Tokenizer.from_file(model_dir + "/tokenizer.json")
enc = tok.encode("A man is eating food.")
feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask]),
        "token_type_ids": np.array([enc.type_ids])}
if kind.startswith("ort"):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if kind == "ort_onnx"
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if kind == "ort_format":
        so.add_session_config_entry("session.load_model_format", "ORT")
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    out = sess.run(["sentence_embedding"], feed)[0]
elif kind.startswith("ov"):
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
    if kind == "ov_cached":
        config["CACHE_DIR"] = cache
    compiled = core.compile_model(graph, "CPU", config)
    out = compiled(feed)[compiled.outputs[1]]
else:
    out = np.zeros((1, 384))
print(time.perf_counter() - start)
"""

KINDS = ("tokenizers_only", "ort_onnx", "ort_preoptimized", "ort_format", "ov_compile", "ov_cached")


def prepare(model_dir: Path, work: Path) -> dict[str, Path]:
    import onnxruntime as ort

    fp32 = model_dir / "onnx" / "model.onnx"
    pre = work / "model_preoptimized.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(pre)
    ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    fmt = work / "model.ort"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(fmt)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    return {"tokenizers_only": fp32, "ort_onnx": fp32, "ort_preoptimized": pre, "ort_format": fmt,
            "ov_compile": fp32, "ov_cached": fp32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coldstart_graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="coldstart-graph-"))
    graphs = prepare(args.model_dir, work)
    cache = work / "ov_cache"
    subprocess.run([sys.executable, "-c", CHILD, "ov_cached", str(args.model_dir), str(graphs["ov_cached"]), str(cache)],
                   check=True, capture_output=True)  # fills the cache
    seconds: dict[str, list[float]] = {k: [] for k in KINDS}
    walls: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(args.repeats):
        order = KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]
        for kind in order:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, kind, str(args.model_dir), str(graphs[kind]), str(cache)],
                                  check=True, capture_output=True, text=True)
            walls[kind].append(time.perf_counter() - started)
            seconds[kind].append(float(done.stdout.strip().splitlines()[-1]))
            print(f"[cold] round {r + 1} {kind:<18} in-process {seconds[kind][-1]:.3f} s, wall {walls[kind][-1]:.3f} s",
                  flush=True)
    info["load_average_end"] = load_average()
    sizes = {k: graphs[k].stat().st_size / 1e6 for k in ("ort_onnx", "ort_preoptimized", "ort_format")}
    report = {"command": " ".join([sys.executable, "-m", "benchmarks.coldstart_graph", *(argv or sys.argv[1:])]),
              "machine": info, "median_in_process_s": {k: statistics.median(v) for k, v in seconds.items()},
              "median_wall_s": {k: statistics.median(v) for k, v in walls.items()}, "seconds": seconds,
              "walls": walls, "sizes_mb": sizes}
    m = report["machine"]
    base = report["median_wall_s"]["ort_onnx"]
    lines = [f"CPU: {m['cpu']['model']}; flags: {' '.join(m['cpu']['flags'])}; load average start "
             f"{m['load_average_start']}, end {m['load_average_end']} (2 shared cores: a loaded machine)",
             f"command: `{report['command']}`", "",
             "| variant | median wall s (process start to first vector) | x ort_onnx | in-process s |", "|---|---|---|---|"]
    for k in KINDS:
        lines.append(f"| {k} | {report['median_wall_s'][k]:.3f} | {report['median_wall_s'][k] / base:.2f} | "
                     f"{report['median_in_process_s'][k]:.3f} |")
    print("\n".join(lines))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

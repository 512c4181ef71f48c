"""Issue 13, part 2: which layers lose quality first under int8, and the recipes that keep it.

For each MatMul type (query, key, value, attention output, FFN up, FFN down) and each transformer block, only
those MatMuls are quantized, once with onnxruntime's dynamic int8 (per-tensor activation scale from the whole
batch, per-channel s8 weights: what `--quantize avx512_vnni` writes) and once per-token (lightembed_export.rowwise:
a scale per token row, per-channel s8 weights). Quality: mean and min cosine to the fp32 file's embeddings on
`--n` mixed real texts. Then whole-model recipes, also timed against fp32 in the same run (interleaved) and
checked for batch invariance (each of 24 short texts alone vs in a batch beside 8 long paragraphs).

    .venv/bin/python -m benchmarks.int8_layers --model-dir work/minilm_ov [--n 200] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.corpus import long_paragraphs, mixed, short_queries
from benchmarks.system import load_average, machine
from benchmarks.timing import cosines

TYPES = {
    "query": r"attention/self/query/",
    "key": r"attention/self/key/",
    "value": r"attention/self/value/",
    "attn_out": r"attention/output/dense/",
    "ffn_up": r"intermediate/dense/",
    "ffn_down": r"layer\.\d+/output/dense/",
}


def block_of(name: str) -> int | None:
    found = re.search(r"layer\.(\d+)/", name)
    return int(found.group(1)) if found else None


def dynamic(src: Path, dst: Path, nodes: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     nodes_to_quantize=nodes, extra_options={"MatMulConstBOnly": True})


def rowwise(src: Path, dst: Path, nodes: list[str]) -> None:
    from lightembed_export.rowwise import quantize_rowwise

    chosen = set(nodes)
    quantize_rowwise(src, dst, keep_fp32=lambda name: name not in chosen)


class Encoder:
    """lightembed's stages on one folder with the graph swapped per file (the same tokenization and pooling)."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        from lightembed import SentenceTransformer

        self.model = SentenceTransformer(model_dir, backend="onnx", threads=threads)
        self.threads = threads

    def use(self, path: Path) -> None:
        self.model._switch(onnx_path=path)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=32)


def invariance(enc: Encoder, shorts: list[str], longs: list[str]) -> float:
    alone = np.stack([enc.encode([t])[0] for t in shorts])
    batched = np.concatenate([enc.encode(shorts[i : i + 8] + longs)[: len(shorts[i : i + 8])] for i in range(0, len(shorts), 8)])
    return float(cosines(alone, batched).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-groups", action="store_true", help="only the whole-model recipes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import onnx

    from lightembed_export.rowwise import weight_matmuls

    info = machine()
    fp32 = args.model_dir / "onnx" / "model.onnx"
    names = weight_matmuls(onnx.load(str(fp32), load_external_data=False))
    texts = mixed(args.n, seed=7)
    enc = Encoder(args.model_dir, args.threads)
    reference = enc.encode(texts)
    groups: dict[str, list[str]] = {f"type {k}": [n for n in names if re.search(v, n)] for k, v in TYPES.items()}
    blocks = sorted({b for b in map(block_of, names) if b is not None})
    groups.update({f"block {b}": [n for n in names if block_of(n) == b] for b in blocks})
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="int8-layers-"))
    if not args.skip_groups:
        for label, nodes in groups.items():
            for method, make in (("dynamic", dynamic), ("per-token", rowwise)):
                path = tmp / "group.onnx"
                make(fp32, path, nodes)
                enc.use(path)
                c = cosines(reference, enc.encode(texts))
                rows.append({"group": label, "method": method, "matmuls": len(nodes), "mean_cos": float(c.mean()),
                             "min_cos": float(c.min())})
                print(f"[group] {label:<16} {method:<10} mean {c.mean():.6f} min {c.min():.6f}", flush=True)
    down = set(groups["type ffn_down"])
    recipes = {
        "dynamic, all MatMuls (today's avx512_vnni file)": (dynamic, names),
        "dynamic, FFN down kept fp32": (dynamic, [n for n in names if n not in down]),
        "per-token, all MatMuls": (rowwise, names),
        "per-token, FFN down kept fp32": (rowwise, [n for n in names if n not in down]),
    }
    paths = {"fp32": fp32}
    for i, (label, (make, nodes)) in enumerate(recipes.items()):
        paths[label] = tmp / f"recipe{i}.onnx"
        make(fp32, paths[label], nodes)
    shorts, longs = short_queries(24, seed=11), long_paragraphs(8, seed=12)
    seconds: dict[str, list[float]] = {k: [] for k in paths}
    quality: dict[str, dict] = {}
    for label, path in paths.items():
        enc.use(path)
        c = cosines(reference, enc.encode(texts))
        quality[label] = {"mean_cos": float(c.mean()), "min_cos": float(c.min()), "alone_vs_batched": invariance(enc, shorts, longs)}
        print(f"[recipe] {label:<48} {quality[label]}", flush=True)
    timing_texts = mixed(args.n, seed=8)
    keys = list(paths)
    for r in range(args.repeats):
        for label in keys[r % len(keys):] + keys[: r % len(keys)]:
            enc.use(paths[label])
            enc.encode(timing_texts[:32])
            started = time.perf_counter()
            enc.encode(timing_texts)
            seconds[label].append(time.perf_counter() - started)
            print(f"[time] round {r + 1} {label:<48} {seconds[label][-1]:.2f} s", flush=True)
    base = statistics.median(seconds["fp32"])
    recipes_out = [{"recipe": k, **quality[k], "median_s": statistics.median(v), "x_fp32": base / statistics.median(v),
                    "size_mb": paths[k].stat().st_size / 1e6} for k, v in seconds.items()]
    info["load_average_end"] = load_average()
    report = {"command": " ".join([sys.executable, "-m", "benchmarks.int8_layers", *(argv or sys.argv[1:])]),
              "machine": info, "n": len(texts), "groups": rows, "recipes": recipes_out}
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"CPU: {m['cpu']['model']}; flags: {' '.join(m['cpu']['flags'])}; load average start "
             f"{m['load_average_start']}, end {m['load_average_end']} (2 cores shared with other engineers' runs: loaded)",
             f"command: `{report['command']}`; quality on {report['n']} mixed texts vs the fp32 file", ""]
    if report["groups"]:
        lines += ["| only these int8 | MatMuls | dynamic mean / min cos | per-token mean / min cos |", "|---|---|---|---|"]
        by = {}
        for r in report["groups"]:
            by.setdefault(r["group"], {"n": r["matmuls"]})[r["method"]] = r
        for group, r in by.items():
            d, p = r["dynamic"], r["per-token"]
            lines.append(f"| {group} | {r['n']} | {d['mean_cos']:.5f} / {d['min_cos']:.5f} | "
                         f"{p['mean_cos']:.5f} / {p['min_cos']:.5f} |")
        lines.append("")
    lines += ["| recipe | mean cos | min cos | alone vs batched (min) | x lightembed fp32 | MB |", "|---|---|---|---|---|---|"]
    for r in report["recipes"]:
        lines.append(f"| {r['recipe']} | {r['mean_cos']:.5f} | {r['min_cos']:.5f} | {r['alone_vs_batched']:.6f} | "
                     f"{r['x_fp32']:.2f} | {r['size_mb']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

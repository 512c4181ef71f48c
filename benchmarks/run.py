"""The benchmark: lightembed vs sentence-transformers (torch and ONNX backend) vs fastembed, one process run.

    python -m benchmarks.run                  # full: 2,000 texts x 3 rounds, cold start, latency, RSS, quality
    python -m benchmarks.run --quick          # < 2 minutes once the model is exported: checks the harness works
    python -m benchmarks.run --install-size   # also the installed size of each stack (minutes; needs PyPI)

Writes RESULTS.md, results.json and throughput.png to benchmarks/ (quick mode: benchmarks/.cache/quick/).
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import flops as flops_mod
from benchmarks.corpus import short_queries
from benchmarks.latency import LATENCY_KEYS, measure_latency
from benchmarks.make_corpus import DEFAULT_N, DEFAULT_RSS_N, ensure_corpus, read_corpus
from benchmarks.model import ensure_model, source_folder
from benchmarks.paths import BATCH_SIZE, BENCH_DIR, CACHE_DIR, THREADS
from benchmarks.quality import batch_invariance, lee_quality
from benchmarks.report import all_tables, render_text, write_results
from benchmarks.runners import BASELINE, FLOOR_KEYS, INT8_KEYS, RUNNERS, STATIC_KEY, ModelPaths, load_available
from benchmarks.system import load_average, machine, versions
from benchmarks.timing import cosines, measure_throughput

STEPS = ("throughput", "quality", "invariance", "latency", "coldstart", "rss")

QUICK = {"n": 32, "repeats": 1, "latency_queries": 20, "latency_rounds": 1, "coldstart_repeats": 1, "lee_docs": 8,
         "invariance_short": 8, "invariance_long": 4}
FULL = {"n": DEFAULT_N, "repeats": 3, "latency_queries": 200, "latency_rounds": 2, "coldstart_repeats": 5, "lee_docs": None,
        "invariance_short": 96, "invariance_long": None}


def echo(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny corpus, 1 round, no RSS or install size")
    p.add_argument("--install-size", action="store_true", help="also measure installed sizes in fresh venvs (minutes)")
    p.add_argument("--n", type=int, help=f"texts in the throughput corpus (default {DEFAULT_N}; quick {QUICK['n']})")
    p.add_argument("--repeats", type=int, help="interleaved rounds, median reported (default 3; quick 1)")
    p.add_argument("--rss-n", type=int, default=DEFAULT_RSS_N, help="texts encoded in the peak-RSS processes")
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--coldstart-repeats", type=int, help="fresh processes per variant (default 5; quick 1)")
    p.add_argument("--latency-queries", type=int, help="single-query calls per variant (default 200; quick 30)")
    p.add_argument("--variants", nargs="+", choices=list(RUNNERS), help="runners to include (default: all)")
    p.add_argument("--skip", nargs="+", choices=STEPS, default=[], help="steps to leave out")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="corpora and the exported model")
    p.add_argument("--model-dir", type=Path, help="use this exported folder instead of building one in --cache-dir")
    p.add_argument("--torch-dir", type=Path, help="sentence-transformers torch folder (default: copy of the weights)")
    p.add_argument("--out-dir", type=Path, help="where RESULTS.md, results.json, throughput.png go "
                   "(default benchmarks/; quick: benchmarks/.cache/quick)")
    return p.parse_args(argv)


def corpus_stats(path: Path, texts: list[str], model_dir: Path) -> tuple[dict, np.ndarray]:
    from benchmarks.runners import lightembed_lengths
    from lightembed import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu", threads=1)
    lengths = lightembed_lengths(model, texts)
    cap = model.max_seq_length or int(lengths.max())
    buckets = [
        int((lengths <= 16).sum()),
        int(((lengths > 16) & (lengths <= 64)).sum()),
        int(((lengths > 64) & (lengths < cap)).sum()),
        int((lengths >= cap).sum()),
    ]
    stats = {"path": str(path), "n_texts": len(texts), "real_tokens": int(lengths.sum()),
             "max_seq_length": cap, "buckets": buckets}
    return stats, lengths


def pick_int8(results: dict) -> dict | None:
    rows = results["throughput"]["rows"]
    cands = [k for k in INT8_KEYS if k in rows]
    if not cands:
        return None
    best = max(cands, key=lambda k: rows[k]["texts_per_s"])
    summary = f"faster int8 file here: {RUNNERS[best].name} ({RUNNERS[best].file})"
    if len(cands) == 2:
        other = next(k for k in cands if k != best)
        gain = rows[best]["texts_per_s"] / rows[other]["texts_per_s"] - 1
        summary += f", {gain * 100:.0f}% more texts/s than {RUNNERS[other].file}"
        d_best, d_other = rows[best].get("cos_mean"), rows[other].get("cos_mean")
        if d_best is not None and d_other is not None:
            summary += f"; mean cosine to torch {d_best:.5f} vs {d_other:.5f}"
    if results["settings"]["quick"]:
        summary += " (quick mode: not a measurement)"
    return {"best": best, "candidates": cands, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    preset = QUICK if args.quick else FULL
    n = args.n or preset["n"]
    repeats = args.repeats or preset["repeats"]
    out_dir = args.out_dir or (CACHE_DIR / "quick" if args.quick else BENCH_DIR)
    skip = set(args.skip)
    if args.quick:
        skip.add("rss")
    started = time.perf_counter()

    results: dict = {
        "command": "python -m benchmarks.run" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv)),
        "settings": {"quick": args.quick, "n": n, "repeats": repeats, "threads": args.threads,
                     "batch_size": args.batch_size, "seed": args.seed},
        "machine": machine(),
        "versions": versions(),
        "skipped_steps": [],
    }
    cpu = results["machine"]["cpu"]
    echo(f"[setup] {cpu['model']} | {results['machine']['usable_cores']} usable cores | "
         f"SIMD: {' '.join(cpu['flags'])} | load {results['machine']['load_average_start']}")
    load = results["machine"]["load_average_start"]
    if load and load[0] > 0.5:
        echo(f"[setup] WARNING: load average {load[0]:.2f} - the machine is busy; timings will be noisy")

    if not args.quick and repeats < 3:
        echo(f"[setup] WARNING: --repeats {repeats}: the benchmark's medians are meant over at least 3 rounds")

    model_dir = args.model_dir or ensure_model(args.cache_dir, echo)
    torch_dir = args.torch_dir or source_folder(args.cache_dir)
    from benchmarks.model import manifest

    exporter = manifest(model_dir).get("exporter", {})
    results["model"] = {"dir": str(model_dir), "torch_dir": str(torch_dir),
                        "exporter": f"{exporter.get('name', '?')} {exporter.get('version', '')}".strip()}
    paths = ModelPaths(Path(model_dir), Path(torch_dir))

    corpus_file = ensure_corpus(args.cache_dir, n, args.seed)
    texts = read_corpus(corpus_file)
    results["corpus"], lengths = corpus_stats(corpus_file, texts, model_dir)
    c = results["corpus"]
    echo(f"[setup] corpus {corpus_file}: {c['n_texts']} texts, {c['real_tokens']:,} real tokens; "
         f"<=16 / 17-64 / 65-{c['max_seq_length'] - 1} / truncated: {c['buckets']}")

    keys = args.variants or [k for k in RUNNERS if k not in FLOOR_KEYS]
    if {"throughput", "quality", "invariance"} - skip:
        runners, skipped = load_available(keys, paths, echo, threads=args.threads, batch_size=args.batch_size)
    else:
        runners, skipped = [], {}
    results["skipped"] = skipped
    results["runner_notes"] = {r.key: r.notes for r in runners if r.notes}
    by_key = {r.key: r for r in runners}

    # ---- throughput, interleaved ----
    if "throughput" not in skip and runners:
        echo(f"[throughput] {len(runners)} runners x {repeats} round(s) x {len(texts)} texts")
        thr = measure_throughput(runners, texts, repeats, echo)
        base = thr.get(BASELINE)
        rows = {}
        for key, res in thr.items():
            row = {"seconds": res.seconds, "median_s": res.median_s, "texts_per_s": res.texts_per_s(len(texts)),
                   "real_tokens": res.real_tokens, "padded_tokens": res.padded_tokens,
                   "real_tokens_per_s": res.real_tokens_per_s, "pad_ratio": res.pad_ratio}
            if base is not None and res.embeddings is not None:
                cos = cosines(res.embeddings, base.embeddings)
                row["cos_min"], row["cos_mean"] = float(cos.min()), float(cos.mean())
            rows[key] = row
        results["throughput"] = {"rows": rows}
        if base is None:
            results["skipped_steps"].append("cosines to torch: sentence-transformers torch did not run")
        results["int8_choice"] = pick_int8(results)
        fl_rows = {}
        dims = flops_mod.model_dims(paths.torch_dir if (paths.torch_dir / "config.json").is_file() else paths.onnx_dir)
        for key in ("le_fp32", "le_O3"):
            if key in rows:
                fl = flops_mod.flop_bound(lengths, dims, rows[key]["median_s"], cpu, results["machine"]["usable_cores"])
                fl["seconds"] = rows[key]["median_s"]
                fl_rows[key] = fl
        if fl_rows:
            order = np.argsort(-lengths, kind="stable")
            results["flops"] = {"rows": fl_rows,
                                "padded_gflop": flops_mod.padded_flops(lengths, order, args.batch_size, dims) / 1e9}
    else:
        results["throughput"] = {"rows": {}}
        results["skipped_steps"].append("throughput")

    # ---- quality on human judgements ----
    if "quality" not in skip:
        q_keys = (BASELINE, "le_fp32", *INT8_KEYS, STATIC_KEY) if args.quick else None
        q_runners = [r for r in runners if q_keys is None or r.key in q_keys]
        results["quality"] = lee_quality(q_runners, preset["lee_docs"], echo)
    else:
        results["skipped_steps"].append("quality (Lee)")

    # ---- int8 batch invariance ----
    if "invariance" not in skip:
        inv_runners = [by_key[k] for k in ("le_fp32", *INT8_KEYS, STATIC_KEY) if k in by_key]
        if inv_runners:
            results["invariance"] = batch_invariance(
                inv_runners, by_key.get("le_fp32"), preset["invariance_short"], args.batch_size,
                preset["invariance_long"], echo,
            )
    else:
        results["skipped_steps"].append("batch invariance")

    # the in-process models are not needed any more; the rest runs in fresh processes
    del runners, by_key
    gc.collect()

    from benchmarks.subprocesses import COLDSTART_KEYS, RSS_KEYS, measure_coldstart, measure_rss

    selected = set(args.variants or RUNNERS)

    # ---- batch-1 latency ----
    if "latency" not in skip:
        nq = args.latency_queries or preset["latency_queries"]
        results["latency"] = measure_latency(
            paths, [k for k in LATENCY_KEYS if k in selected], short_queries(nq, seed=5), preset["latency_rounds"], echo
        )
    else:
        results["skipped_steps"].append("latency")
    if "coldstart" not in skip:
        reps = args.coldstart_repeats or preset["coldstart_repeats"]
        results["coldstart"] = measure_coldstart(paths, [k for k in COLDSTART_KEYS if k in selected], reps, echo)
    else:
        results["skipped_steps"].append("cold start")

    if "rss" not in skip:
        rss_corpus = ensure_corpus(args.cache_dir, args.rss_n, args.seed)
        results["rss"] = measure_rss(paths, [k for k in RSS_KEYS if k in selected], rss_corpus, echo)
    else:
        results["skipped_steps"].append("peak RSS" + (" (quick mode)" if args.quick else ""))

    if args.install_size:
        from benchmarks.install_size import measure_install_sizes

        results["install_size"] = measure_install_sizes(echo)
    else:
        results["skipped_steps"].append("installed size (opt-in: --install-size)")

    results["load_average_end"] = load_average()
    results["elapsed_s"] = time.perf_counter() - started
    written = write_results(results, out_dir, echo)
    echo("")
    for table in all_tables(results):
        echo(render_text(table))
        echo("")
    echo(f"[done] {results['elapsed_s']:.0f} s; wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())

"""CPU speed levers, each switched on or off alone against lightembed's defaults, on the benchmark model and corpus.

    python -m benchmarks.levers [--n 1000] [--rounds 5] [--threads 2] [--out benchmarks/.cache/levers.json]

Every variant encodes the same corpus at batch size 32 in interleaved rounds; the table gives the median and the
ratio to the default. Also printed: the share of an encode() spent tokenizing and padding, the most that
overlapping tokenization with inference could save.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.paths import BATCH_SIZE, CACHE_DIR, FP32_FILE, QINT8_FILE, THREADS


def _swap_session(model: Any, **config: str | bool) -> None:
    """Give `model` a new session on the same file with `config` applied to the default session options."""
    import onnxruntime as ort

    from lightembed.graphs.onnxruntime import OnnxGraph
    from lightembed.machine import usable_cores

    options = ort.SessionOptions()
    options.intra_op_num_threads = model.runtime_info.intra_op_threads or usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    for key, value in config.items():
        if key == "enable_cpu_mem_arena":
            options.enable_cpu_mem_arena = bool(value)
        else:
            options.add_session_config_entry(key, str(value))
    session = ort.InferenceSession(str(model.onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    model._graph = OnnxGraph(session, ("last_hidden_state", "token_embeddings"))


def variants(model_dir: Path, file_name: str, threads: int) -> dict[str, Callable[[list[str]], np.ndarray]]:
    from lightembed import SentenceTransformer

    def load(**kwargs: Any) -> Any:
        return SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, threads=threads, **kwargs)

    default = load()
    numpy_pooling = load()
    numpy_pooling.use_pooled_output = False
    no_spin = load()
    _swap_session(no_spin, **{"session.intra_op.allow_spinning": "0"})
    no_arena = load()
    _swap_session(no_arena, enable_cpu_mem_arena=False)
    no_cap = load(max_batch_tokens=None)
    cap_4096 = load(max_batch_tokens=4096)
    cap_1024 = load(max_batch_tokens=1024)

    def run(model: Any) -> Callable[[list[str]], np.ndarray]:
        return lambda texts: model.encode(texts, batch_size=BATCH_SIZE)

    return {
        "default (fused pooling, spinning, arena, 2048-token batches)": run(default),
        "NumPy pooling instead of the fused output": run(numpy_pooling),
        "thread spinning off": run(no_spin),
        "CPU memory arena off": run(no_arena),
        "no token cap per batch": run(no_cap),
        "4096-token batches": run(cap_4096),
        "1024-token batches": run(cap_1024),
    }


def tokenize_share(model_dir: Path, file_name: str, texts: list[str], threads: int, rounds: int) -> dict[str, float]:
    """Seconds to tokenize and pad the corpus as encode() does, against a whole encode()."""
    from lightembed import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, threads=threads)
    tok, full = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _batch in model.tokenizer_wrapper.batches(texts, BATCH_SIZE, model.max_batch_tokens):
            pass
        tok.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.encode(texts, batch_size=BATCH_SIZE)
        full.append(time.perf_counter() - start)
    t, f = statistics.median(tok), statistics.median(full)
    return {"tokenize_and_pad_s": t, "encode_s": f, "share": t / f}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--out", type=Path, default=CACHE_DIR / "levers.json")
    args = parser.parse_args(argv)

    from benchmarks.make_corpus import ensure_corpus, read_corpus
    from benchmarks.model import ensure_model

    model_dir = ensure_model()
    texts = read_corpus(ensure_corpus(CACHE_DIR, args.n))
    report: dict[str, Any] = {"n_texts": len(texts), "rounds": args.rounds, "threads": args.threads, "files": {}}
    for file_name in (FP32_FILE, QINT8_FILE):
        runs = variants(model_dir, file_name, args.threads)
        for encode in runs.values():  # warm-up
            encode(texts[:64])
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                runs[name](texts)
                seconds[name].append(time.perf_counter() - start)
        base = statistics.median(seconds[names[0]])
        print(f"\n{file_name}, {len(texts)} texts, batch size {BATCH_SIZE}, {args.threads} threads, "
              f"median of {args.rounds} interleaved rounds")
        print("| lever | texts/s | x default |\n|---|---|---|")
        rows = {}
        for name in names:
            med = statistics.median(seconds[name])
            rows[name] = {"seconds": seconds[name], "texts_per_s": len(texts) / med, "x_default": base / med}
            print(f"| {name} | {len(texts) / med:.1f} | {base / med:.3f} |")
        share = tokenize_share(model_dir, file_name, texts, args.threads, args.rounds)
        print(f"tokenize + pad: {share['tokenize_and_pad_s']:.3f} s of {share['encode_s']:.3f} s per encode "
              f"({share['share'] * 100:.1f}%): the most that tokenizing ahead of inference could save")
        report["files"][file_name] = {"levers": rows, "tokenize": share}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

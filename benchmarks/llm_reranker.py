"""Causal-LM rerankers on CPU: sentence-transformers 6 (torch) against lightembed's export of the same checkpoint on
onnxruntime (fp32, each int8 file) and OpenVINO (f32, and its default precision: bf16 on AMX CPUs).

Every runner scores the same (query, document) pairs once per round, the runners' order rotated each round, so slow
drifts of a shared machine fall on all alike; the median round is reported, with each runner's largest score
difference to torch. Needs a quiet machine for the times to mean anything.

    lightembed-export Qwen/Qwen3-Reranker-0.6B -o work/qwen3-reranker --quantize avx2_qint8
    python -m benchmarks.llm_reranker --source Qwen/Qwen3-Reranker-0.6B --export work/qwen3-reranker --pairs 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

QUERIES = (
    "how do vaccines train the immune system?",
    "what is the capital of australia",
    "reset a forgotten password on a laptop",
    "Wie funktioniert eine Wärmepumpe?",
)
DOCUMENT = (
    "Vaccines expose the immune system to a harmless piece or copy of a pathogen, so that it learns to recognise "
    "and fight the real one later. Canberra is the capital; Sydney is the largest city. "
)


def make_pairs(n: int) -> list[tuple[str, str]]:
    """`n` pairs with documents of varied length (1 to 8 repeats of DOCUMENT), so batches pad as real ones do."""
    return [(QUERIES[i % len(QUERIES)], DOCUMENT * (1 + i % 8)) for i in range(n)]


def runners(source: str, export: Path, batch_size: int) -> dict[str, Callable[[list[tuple[str, str]]], np.ndarray]]:
    """Name -> a function scoring pairs with raw LogitScore scores (no activation)."""
    import sentence_transformers
    import torch

    import lightembed
    from lightembed.activations import Identity

    torch_model = sentence_transformers.CrossEncoder(source, device="cpu")
    found: dict[str, Callable[[list[tuple[str, str]]], np.ndarray]] = {
        "torch (sentence-transformers)": lambda p: np.asarray(
            torch_model.predict(p, batch_size=batch_size, activation_fn=torch.nn.Identity()), dtype=np.float64
        )
    }

    def ours(model: Any) -> Callable[[list[tuple[str, str]]], np.ndarray]:
        return lambda p: np.asarray(model.predict(p, batch_size=batch_size, activation_fn=Identity()), dtype=np.float64)

    for onnx in sorted((export / "onnx").glob("model*.onnx")):
        name = onnx.relative_to(export).as_posix()
        found[f"onnxruntime {name}"] = ours(lightembed.CrossEncoder(str(export), device="cpu", file_name=name))
    for precision in ("f32", None):
        config = {"ov_config": {"INFERENCE_PRECISION_HINT": precision}} if precision else None
        model = lightembed.CrossEncoder(str(export), device="cpu", backend="openvino", model_kwargs=config)
        found[f"openvino {model._graph.inference_precision}"] = ours(model)  # type: ignore[attr-defined]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the sentence-transformers folder or Hub id")
    parser.add_argument("--export", type=Path, required=True, help="its lightembed-export folder")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    pairs = make_pairs(args.pairs)
    found = runners(args.source, args.export, args.batch_size)
    names = list(found)
    scores = {name: found[name](pairs[: args.batch_size]) for name in names}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            start = time.perf_counter()
            scores[name] = found[name](pairs)
            seconds[name].append(time.perf_counter() - start)
    reference = scores[names[0]]
    results = [
        {"runner": name, "median_s": statistics.median(seconds[name]), "pairs_per_s": args.pairs / statistics.median(
            seconds[name]), "max_abs_diff_to_torch": float(np.abs(scores[name] - reference).max())}
        for name in names
    ]  # fmt: skip
    width = max(len(name) for name in names)
    print(f"{'runner':<{width}} | pairs/s | max |score diff| to torch")
    for row in results:
        print(f"{row['runner']:<{width}} | {row['pairs_per_s']:7.1f} | {row['max_abs_diff_to_torch']:.2e}")
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "rounds": args.rounds, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput: every runner encodes the whole corpus once per round, rounds repeated, the runners' order rotated
each round (interleaved), so slow drifts of a shared machine fall on all of them alike. Median of the rounds."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from benchmarks.runners import Runner, padded_tokens


@dataclass
class Throughput:
    key: str
    name: str
    seconds: list[float] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0
    embeddings: np.ndarray | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    def texts_per_s(self, n_texts: int) -> float:
        return n_texts / self.median_s

    @property
    def real_tokens_per_s(self) -> float:
        return self.real_tokens / self.median_s

    @property
    def pad_ratio(self) -> float:
        return self.padded_tokens / max(self.real_tokens, 1)


def warm_up(runners: Sequence[Runner], texts: Sequence[str], echo: Callable[[str], None] = print) -> None:
    """One small encode per runner (first-run allocations, thread pools) before anything is timed."""
    sample = list(texts[: runners[0].batch_size]) if runners else []
    for runner in runners:
        runner.encode(sample)
    if runners:
        echo(f"[throughput] warmed up {len(runners)} runners on {len(sample)} texts")


def measure_throughput(
    runners: Sequence[Runner],
    texts: Sequence[str],
    repeats: int,
    echo: Callable[[str], None] = print,
) -> dict[str, Throughput]:
    results = {r.key: Throughput(r.key, r.name) for r in runners}
    for runner in runners:
        lengths = runner.token_lengths(texts)
        results[runner.key].real_tokens = int(lengths.sum())
        results[runner.key].padded_tokens = padded_tokens(lengths, texts, runner.batching, runner.batch_size)
    warm_up(runners, texts, echo)
    order = list(runners)
    for round_no in range(repeats):
        shift = round_no % max(len(order), 1)
        this_round = order[shift:] + order[:shift]
        for runner in this_round:
            started = time.perf_counter()
            out = runner.encode(texts)
            elapsed = time.perf_counter() - started
            res = results[runner.key]
            res.seconds.append(elapsed)
            if res.embeddings is None:
                res.embeddings = out
            echo(
                f"[throughput] round {round_no + 1}/{repeats} {runner.name:<52} {elapsed:8.2f} s "
                f"{len(texts) / elapsed:8.1f} texts/s"
            )
    return results


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-30)

"""Quality: Spearman correlation with human similarity ratings of the Lee corpus, and int8 batch invariance."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from benchmarks.corpus import lee_documents, lee_human_similarities, long_paragraphs, short_queries
from benchmarks.runners import Runner
from benchmarks.timing import cosines


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values given the average of the ranks they span (as scipy.stats.rankdata 'average')."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0  # mean of ranks s+1 .. e
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average-tied ranks."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom else float("nan")


def lee_quality(
    runners: Sequence[Runner], max_docs: int | None = None, echo: Callable[[str], None] = print
) -> dict:
    """Spearman of cosine scores with the human ratings for each runner (all 1,225 pairs unless max_docs)."""
    try:
        pairs, human, path = lee_human_similarities()
    except FileNotFoundError as exc:
        echo(f"[quality] SKIP Lee: {exc}")
        return {"skipped": str(exc)}
    docs = lee_documents()
    if max_docs:
        docs = docs[:max_docs]
        keep = [k for k, (i, j) in enumerate(pairs) if i < max_docs and j < max_docs]
        pairs = [pairs[k] for k in keep]
        human = [human[k] for k in keep]
    left = np.array([i for i, _ in pairs])
    right = np.array([j for _, j in pairs])
    out: dict = {"ratings_file": str(path), "documents": len(docs), "pairs": len(pairs), "rho": {}}
    for runner in runners:
        emb = runner.encode(docs)
        scores = cosines(emb[left], emb[right])
        out["rho"][runner.key] = spearman(scores, human)
        echo(f"[quality] Lee Spearman {runner.name:<52} {out['rho'][runner.key]:.4f} ({len(pairs)} pairs)")
    return out


def batch_invariance(
    runners: Sequence[Runner],
    reference: Runner | None,
    n_short: int = 96,
    batch_size: int = 32,
    n_long: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """For each runner: each short text embedded alone vs. embedded in one batch (at most `batch_size` rows) beside
    `n_long` long paragraphs (default half the batch; every row is padded to the maximum length). Also each against
    `reference` (fp32) alone."""
    shorts = short_queries(n_short, seed=11)
    n_long = batch_size // 2 if n_long is None else min(n_long, batch_size - 1)
    per_batch = batch_size - n_long
    longs = long_paragraphs(n_long, seed=12)
    ref_alone = None
    if reference is not None:
        ref_alone = np.stack([reference.encode([t])[0] for t in shorts])
    out: dict = {"n_short": len(shorts), "batch": f"{min(per_batch, len(shorts))} short + {len(longs)} long paragraphs",
                 "n_long": len(longs), "rows": {}}
    for runner in runners:
        alone = np.stack([runner.encode([t])[0] for t in shorts])
        mixed_rows = []
        for start in range(0, len(shorts), per_batch):
            chunk = shorts[start : start + per_batch]
            emb = runner.encode(chunk + longs)
            mixed_rows.append(emb[: len(chunk)])
        batched = np.concatenate(mixed_rows)
        row: dict = {}
        c = cosines(alone, batched)
        row["alone_vs_batched"] = (float(c.min()), float(c.mean()))
        if ref_alone is not None:
            c1 = cosines(alone, ref_alone)
            c2 = cosines(batched, ref_alone)
            row["alone_vs_fp32"] = (float(c1.min()), float(c1.mean()))
            row["batched_vs_fp32"] = (float(c2.min()), float(c2.mean()))
        out["rows"][runner.key] = row
        echo(
            f"[invariance] {runner.name:<52} alone vs batched: min {row['alone_vs_batched'][0]:.6f} "
            f"mean {row['alone_vs_batched'][1]:.6f}"
        )
    return out

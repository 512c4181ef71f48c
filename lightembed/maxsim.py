"""MaxSim (late interaction) scores between multi-vector embeddings, in NumPy: sentence-transformers 6's
`util.maxsim`, `maxsim_pairwise`, `mean_maxsim` and `mean_maxsim_pairwise`, with their arguments and results.

Each side is a list of (tokens_i, dim) arrays (what MultiVectorEncoder.encode returns), a padded
(n, tokens, dim) array (all-zero rows count as padding unless a mask is given) or one (tokens, dim) array (a batch
of one). MaxSim(q, d) = sum over q's tokens of the largest dot product with any of d's tokens; the mean variants
divide by q's real token count. A document with no token left scores -1e9 (as 6.2), below every real one.

The documents' tokens are stacked once into one (total_tokens, dim) matrix; each block of queries is multiplied
with it and reduced per document with `np.maximum.reduceat`, so the largest temporary is (query tokens x document
tokens) of one block, kept under `chunk_elements` (100 million by default, 400 MB in float32, as in 6.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightembed.errors import LightembedValueError

EMPTY_DOCUMENT_SCORE = -1e9
DEFAULT_CHUNK_ELEMENTS = 100_000_000

__all__ = ["maxsim", "maxsim_pairwise", "mean_maxsim", "mean_maxsim_pairwise"]


def _as_float(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object:
        raise LightembedValueError("multi-vector embeddings must be numeric arrays of shape (tokens, dim)")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def _items(embeddings: Any, mask: Any, name: str) -> list[np.ndarray]:
    """One side as a list of (real_tokens_i, dim) float arrays, masked tokens dropped."""
    masks: Any
    if isinstance(embeddings, (list, tuple)):
        items = [_as_float(e) for e in embeddings]
        masks = None if mask is None else [np.asarray(m) for m in mask] if isinstance(mask, (list, tuple)) else list(np.asarray(mask))
    else:
        arr = _as_float(embeddings)
        masks = None if mask is None else np.asarray(mask)
        if arr.ndim == 2:
            arr = arr[None]
            masks = None if masks is None else masks.reshape(1, -1)
        if arr.ndim != 3:
            raise LightembedValueError(f"{name} must be a list of (tokens, dim) arrays or a (n, tokens, dim) array, got shape {arr.shape}")
        items = list(arr)
        if masks is None:
            masks = [row.any(axis=-1) for row in arr]  # all-zero rows are padding (6.2's rule)
    for i, item in enumerate(items):
        if item.ndim != 2:
            raise LightembedValueError(f"{name}[{i}] must be a (tokens, dim) array, got shape {item.shape}")
    if masks is not None:
        if len(masks) != len(items):
            raise LightembedValueError(f"{name}_mask has {len(masks)} rows for {len(items)} embeddings")
        for i, (item, m) in enumerate(zip(items, masks)):
            if m.shape[-1] < item.shape[0]:
                raise LightembedValueError(f"{name}_mask[{i}] covers {m.shape[-1]} tokens, but {name}[{i}] has {item.shape[0]}")
        items = [item[np.asarray(m[: item.shape[0]], dtype=bool)] for item, m in zip(items, masks)]
    return items


def _dims(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    dims = {x.shape[1] for x in (*a, *b)}
    if len(dims) > 1:
        raise LightembedValueError(f"Embedding dimensions differ between the multi-vector embeddings: {sorted(dims)}")


def _score_block(queries: list[np.ndarray], stacked: np.ndarray, starts: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """(len(queries), n_docs) MaxSim of a block of queries against documents stacked with `starts` offsets."""
    out = np.zeros((len(queries), len(starts)), dtype=np.float32)
    keep = ~empty
    for row, q in enumerate(queries):
        if q.shape[0] == 0 or not keep.any():
            continue
        sims = q @ stacked.T  # (q_tokens, total_doc_tokens)
        best = np.maximum.reduceat(sims, starts[keep], axis=1)  # empty documents have no columns
        out[row, keep] = best.astype(np.float32).sum(axis=0)
    out[:, empty] = EMPTY_DOCUMENT_SCORE
    return out


def maxsim(
    a: Any,
    b: Any,
    a_mask: Any = None,
    b_mask: Any = None,
    chunk_elements: int | None = None,
    length_normalize: bool = False,
    device: str | None = None,
) -> np.ndarray:
    """(len(a), len(b)) float32 matrix: res[i][j] = MaxSim(a[i], b[j]) (divided by a[i]'s real token count when
    `length_normalize`). `device` is accepted for sentence-transformers' signature; NumPy runs on the CPU."""
    del device
    queries, documents = _items(a, a_mask, "a"), _items(b, b_mask, "b")
    _dims(queries, documents)
    if not queries or not documents:
        return np.zeros((len(queries), len(documents)), dtype=np.float32)
    dtype = np.result_type(*(x.dtype for x in (*queries, *documents)))
    lengths = np.array([d.shape[0] for d in documents])
    empty = lengths == 0
    budget = chunk_elements or DEFAULT_CHUNK_ELEMENTS
    blocks: list[np.ndarray] = []
    # Documents in groups whose stacked tokens stay within the budget for one query's similarities.
    doc_groups: list[tuple[int, int]] = []
    start = 0
    longest_query = max(q.shape[0] for q in queries) or 1
    while start < len(documents):
        end, tokens = start, 0
        while end < len(documents) and (end == start or (tokens + lengths[end]) * longest_query <= budget):
            tokens += lengths[end]
            end += 1
        doc_groups.append((start, end))
        start = end
    for d_start, d_end in doc_groups:
        group = documents[d_start:d_end]
        stacked = np.concatenate(group).astype(dtype, copy=False) if group else np.zeros((0, 1), dtype)
        starts = np.concatenate(([0], np.cumsum(lengths[d_start:d_end])[:-1]))
        blocks.append(_score_block([q.astype(dtype, copy=False) for q in queries], stacked, starts, empty[d_start:d_end]))
    scores = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    if length_normalize:
        scores = scores / np.maximum([q.shape[0] for q in queries], 1)[:, None].astype(np.float32)
    return scores


def maxsim_pairwise(
    a: Any,
    b: Any,
    a_mask: Any = None,
    b_mask: Any = None,
    chunk_elements: int | None = None,
    length_normalize: bool = False,
    device: str | None = None,
) -> np.ndarray:
    """(n,) float32: res[i] = MaxSim(a[i], b[i]) (mean over a[i]'s real tokens when `length_normalize`)."""
    del device, chunk_elements  # one pair at a time: the temporary is one query x one document
    queries, documents = _items(a, a_mask, "a"), _items(b, b_mask, "b")
    if len(queries) != len(documents):
        raise LightembedValueError(
            f"`a` and `b` must hold the same number of items to score as pairs, got {len(queries)} and {len(documents)}."
        )
    _dims(queries, documents)
    scores = np.zeros(len(queries), dtype=np.float32)
    for i, (q, d) in enumerate(zip(queries, documents)):
        if d.shape[0] == 0:
            scores[i] = EMPTY_DOCUMENT_SCORE
        elif q.shape[0]:
            dtype = np.result_type(q.dtype, d.dtype)
            scores[i] = (q.astype(dtype, copy=False) @ d.astype(dtype, copy=False).T).max(axis=1).astype(np.float32).sum()
    if length_normalize:
        scores = scores / np.maximum([q.shape[0] for q in queries], 1).astype(np.float32)
    return scores


def mean_maxsim(
    a: Any,
    b: Any,
    a_mask: Any = None,
    b_mask: Any = None,
    chunk_elements: int | None = None,
    length_normalize: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """maxsim divided by each query's real token count (`length_normalize=False` gives plain maxsim)."""
    return maxsim(a, b, a_mask, b_mask, chunk_elements, length_normalize, device)


def mean_maxsim_pairwise(
    a: Any,
    b: Any,
    a_mask: Any = None,
    b_mask: Any = None,
    chunk_elements: int | None = None,
    length_normalize: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """maxsim_pairwise divided by each query's real token count (`length_normalize=False`: plain)."""
    return maxsim_pairwise(a, b, a_mask, b_mask, chunk_elements, length_normalize, device)


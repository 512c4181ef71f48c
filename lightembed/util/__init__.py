"""NumPy-only versions of the ``sentence_transformers.util`` helpers.

The functions keep sentence-transformers' names, argument names, defaults and
result shapes, but take and return NumPy arrays instead of torch tensors.
Similarity matrices are ``np.ndarray``; float32 inputs (and plain lists) give
float32 results, float64 inputs give float64 results.

This module imports only NumPy, the standard library, lightembed.inputs and lightembed.maxsim (NumPy only).
"""

from __future__ import annotations

import functools
import heapq
import logging
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from lightembed.errors import LightembedValueError
from lightembed.inputs import check_int
from lightembed.maxsim import maxsim, maxsim_pairwise, mean_maxsim, mean_maxsim_pairwise

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
else:  # keep numpy.typing out of the import path
    ArrayLike = Any

__all__ = [
    "SimilarityFunction",
    "community_detection",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "information_retrieval",
    "manhattan_sim",
    "maxsim",
    "maxsim_pairwise",
    "mean_maxsim",
    "mean_maxsim_pairwise",
    "normalize_embeddings",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "pytorch_cos_sim",
    "quantize_embeddings",
    "semantic_search",
    "similarity_fct_name",
]

ScoreFunction = Callable[[Any, Any], Any]

# torch.nn.functional.normalize clamps the norm from below with this eps.
_NORM_EPS = 1e-12
# Upper bound on the number of elements of the temporary (rows x cols x dim)
# array used for Manhattan distances.
_MANHATTAN_BLOCK_ELEMS = 1 << 24
# Row-block size (in scores) for the top-k selection temporaries.
_TOPK_BLOCK_ELEMS = 1 << 22

_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _to_float_array(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a float32/float64 ndarray.

    Arrays keep float32/float64; everything else, including Python lists of
    floats (as with ``torch.tensor``), becomes float32.
    """
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise LightembedValueError(f"{name} could not be converted to a numeric array: {exc}") from None
    if arr.dtype == np.float64 and not hasattr(x, "__array__"):  # plain Python sequence
        return arr.astype(np.float32)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return arr
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise LightembedValueError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    return arr.astype(np.float32)


def _to_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a 2-D float array; a 1-D input becomes a single row."""
    arr = _to_float_array(x, name)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    elif arr.ndim != 2:
        raise LightembedValueError(f"{name} must be 1-D or 2-D (n, dim), got shape {arr.shape}")
    return arr


def _matrix_pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a2 = _to_matrix(a, "a")
    b2 = _to_matrix(b, "b")
    if a2.shape[1] != b2.shape[1]:
        raise LightembedValueError(
            f"Embedding dimensions differ: a has dim {a2.shape[1]} (shape {a2.shape}), "
            f"b has dim {b2.shape[1]} (shape {b2.shape})"
        )
    dtype = np.result_type(a2.dtype, b2.dtype)
    return a2.astype(dtype, copy=False), b2.astype(dtype, copy=False)


def _pairwise_pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a1 = _to_float_array(a, "a")
    b1 = _to_float_array(b, "b")
    for name, arr in (("a", a1), ("b", b1)):
        if arr.ndim not in (1, 2):
            raise LightembedValueError(f"{name} must be 1-D or 2-D (n, dim), got shape {arr.shape}")
    if a1.shape[-1] != b1.shape[-1]:
        raise LightembedValueError(
            f"Embedding dimensions differ: a has dim {a1.shape[-1]} (shape {a1.shape}), "
            f"b has dim {b1.shape[-1]} (shape {b1.shape})"
        )
    try:
        np.broadcast_shapes(a1.shape, b1.shape)
    except ValueError:
        raise LightembedValueError(
            f"Pairwise scores need the same number of rows in a and b, got shapes {a1.shape} and {b1.shape}"
        ) from None
    dtype = np.result_type(a1.dtype, b1.dtype)
    return a1.astype(dtype, copy=False), b1.astype(dtype, copy=False)


# --------------------------------------------------------------------------- #
# Similarity functions
# --------------------------------------------------------------------------- #
def normalize_embeddings(embeddings: ArrayLike) -> np.ndarray:
    """Scale each embedding (row) to unit L2 length; all-zero rows stay zero."""
    arr = _to_float_array(embeddings, "embeddings")
    if arr.ndim not in (1, 2):
        raise LightembedValueError(f"embeddings must be 1-D or 2-D (n, dim), got shape {arr.shape}")
    norms = np.sqrt(np.einsum("...i,...i->...", arr, arr))[..., np.newaxis]
    return arr / np.maximum(norms, arr.dtype.type(_NORM_EPS))


def cos_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Cosine similarity matrix: ``res[i][j] = cos_sim(a[i], b[j])``."""
    a2, b2 = _matrix_pair(a, b)
    return normalize_embeddings(a2) @ normalize_embeddings(b2).T


def pytorch_cos_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Alias of :func:`cos_sim` (kept for sentence-transformers compatibility)."""
    return cos_sim(a, b)


def dot_score(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Dot-product matrix: ``res[i][j] = dot(a[i], b[j])``."""
    a2, b2 = _matrix_pair(a, b)
    return a2 @ b2.T


def euclidean_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Negative Euclidean distance matrix: ``res[i][j] = -||a[i] - b[j]||``."""
    a2, b2 = _matrix_pair(a, b)
    sq = np.einsum("ij,ij->i", a2, a2)[:, None] + np.einsum("ij,ij->i", b2, b2)[None, :]
    sq -= 2 * (a2 @ b2.T)
    np.maximum(sq, 0, out=sq)
    return -np.sqrt(sq)


def manhattan_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Negative Manhattan distance matrix: ``res[i][j] = -sum(|a[i] - b[j]|)``."""
    a2, b2 = _matrix_pair(a, b)
    n, m, d = a2.shape[0], b2.shape[0], a2.shape[1]
    out = np.empty((n, m), dtype=a2.dtype)
    if n == 0 or m == 0:
        return out
    if d == 0:
        out.fill(0)
        return -out
    rows = max(1, _MANHATTAN_BLOCK_ELEMS // max(1, m * d))
    for start in range(0, n, rows):
        block = a2[start : start + rows]
        np.abs(block[:, None, :] - b2[None, :, :]).sum(axis=-1, out=out[start : start + rows])
    return np.negative(out, out=out)


def pairwise_dot_score(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Row-wise dot products: ``res[i] = dot(a[i], b[i])``."""
    a1, b1 = _pairwise_pair(a, b)
    return np.asarray((a1 * b1).sum(axis=-1))


def pairwise_cos_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Row-wise cosine similarities: ``res[i] = cos_sim(a[i], b[i])``."""
    a1, b1 = _pairwise_pair(a, b)
    return pairwise_dot_score(normalize_embeddings(a1), normalize_embeddings(b1))


def pairwise_euclidean_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Row-wise negative Euclidean distances: ``res[i] = -||a[i] - b[i]||``."""
    a1, b1 = _pairwise_pair(a, b)
    return np.asarray(-np.sqrt(((a1 - b1) ** 2).sum(axis=-1)))


def pairwise_manhattan_sim(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Row-wise negative Manhattan distances: ``res[i] = -sum(|a[i] - b[i]|)``."""
    a1, b1 = _pairwise_pair(a, b)
    return np.asarray(-np.abs(a1 - b1).sum(axis=-1))


class SimilarityFunction(Enum):
    """The similarity functions by name, as sentence-transformers' enum (6.x adds the MaxSim pair)."""

    COSINE = "cosine"
    DOT_PRODUCT = "dot"
    DOT = "dot"  # alias of DOT_PRODUCT
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"
    MAXSIM = "maxsim"
    MEAN_MAXSIM = "meanmaxsim"

    @staticmethod
    def to_similarity_fn(similarity_function: "str | SimilarityFunction") -> Callable[..., np.ndarray]:
        """The (n, m) score function of a name or member (ValueError naming the valid ones otherwise)."""
        return _SIMILARITY_FNS[SimilarityFunction(similarity_function)][0]

    @staticmethod
    def to_similarity_pairwise_fn(similarity_function: "str | SimilarityFunction") -> Callable[..., np.ndarray]:
        """The (n,) pairwise score function of a name or member."""
        return _SIMILARITY_FNS[SimilarityFunction(similarity_function)][1]

    @staticmethod
    def possible_values() -> list[str]:
        """["cosine", "dot", "euclidean", "manhattan", "maxsim", "meanmaxsim"]."""
        return [m.value for m in SimilarityFunction]


def similarity_fct_name(similarity_fct: Callable[..., Any]) -> str:
    """A readable name of a scoring callable, as sentence-transformers 6 writes it in configs: a partial shows its
    bound keywords, a model's similarity / similarity_pairwise the function its similarity_fn_name picks."""
    if isinstance(similarity_fct, functools.partial):
        name = getattr(similarity_fct.func, "__name__", type(similarity_fct.func).__name__)
        args = ", ".join(f"{key}={value!r}" for key, value in similarity_fct.keywords.items())
        return f"{name}({args})" if args else name
    owner = getattr(similarity_fct, "__self__", None)
    name = getattr(similarity_fct, "__name__", type(similarity_fct).__name__)
    if name in ("similarity", "similarity_pairwise") and hasattr(owner, "similarity_fn_name"):
        pick = SimilarityFunction.to_similarity_fn if name == "similarity" else SimilarityFunction.to_similarity_pairwise_fn
        return pick(owner.similarity_fn_name).__name__  # type: ignore[union-attr]  # hasattr() above
    config = getattr(similarity_fct, "get_config_dict", None)
    if config is not None:
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in config().items())})"
    return name


# --------------------------------------------------------------------------- #
# Retrieval
# --------------------------------------------------------------------------- #
def _scores_matrix(score_function: ScoreFunction, q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Call ``score_function`` and check it returned a (len(q), len(c)) matrix."""
    scores = np.asarray(score_function(q, c))
    if scores.shape != (q.shape[0], c.shape[0]):
        raise LightembedValueError(f"score_function returned shape {scores.shape}, expected {(q.shape[0], c.shape[0])}")
    return scores


def _chunk_scorer(
    score_function: ScoreFunction, queries: np.ndarray, corpus: np.ndarray, corpus_chunk_size: int
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Return ``(queries, corpus, fn)`` with ``fn(q_chunk, c_chunk)`` giving checked scores.

    For :func:`cos_sim` the rows are normalized once up front (the corpus only
    when it fits in one chunk, so memory stays as bounded as with chunking).
    """
    if score_function is not cos_sim:
        return queries, corpus, lambda q, c: _scores_matrix(score_function, q, c)
    dtype = np.result_type(queries.dtype, corpus.dtype)
    queries = normalize_embeddings(queries.astype(dtype, copy=False))
    corpus = corpus.astype(dtype, copy=False)
    if corpus.shape[0] <= corpus_chunk_size:
        corpus = normalize_embeddings(corpus)
        return queries, corpus, lambda q, c: q @ c.T
    return queries, corpus, lambda q, c: q @ normalize_embeddings(c).T


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest scores and their column indices.

    Rows are sorted by score (descending), ties by column index (ascending);
    among tied scores the lowest indices are kept. NaN ranks below everything.
    """
    n, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.empty((n, 0), dtype=scores.dtype), np.empty((n, 0), dtype=np.intp)
    key = scores
    if np.issubdtype(key.dtype, np.floating) and np.isnan(key).any():
        key = np.where(np.isnan(key), -np.inf, key)
    if k == m:
        idx = np.broadcast_to(np.arange(m), (n, m))
    else:
        idx = np.empty((n, k), dtype=np.intp)
        # Row blocks keep the temporaries (a few bytes per score) small.
        rows = max(1, _TOPK_BLOCK_ELEMS // m)
        for start in range(0, n, rows):
            block = key[start : start + rows]
            part = np.argpartition(block, m - k, axis=1)[:, m - k :]  # first column: k-th largest
            kth = np.take_along_axis(block, part[:, :1], axis=1)
            idx[start : start + rows] = part
            # argpartition picks arbitrary ties at the boundary; redo those rows
            # so that the lowest-index ties are kept.
            for r in np.flatnonzero((block >= kth).sum(axis=1) > k):
                row, cut = block[r], kth[r, 0]
                above = np.flatnonzero(row > cut)
                tied = np.flatnonzero(row == cut)[: k - above.size]
                idx[start + r] = np.concatenate((above, tied))
    vals = np.take_along_axis(key, idx, axis=1)
    idx = np.take_along_axis(idx, np.lexsort((idx, -vals), axis=-1), axis=1)
    return np.take_along_axis(scores, idx, axis=1), idx


def semantic_search(
    query_embeddings: ArrayLike,
    corpus_embeddings: ArrayLike,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: ScoreFunction = cos_sim,
) -> list[list[dict[str, int | float]]]:
    """Find the ``top_k`` best-scoring corpus entries for every query.

    Returns one list per query of ``{"corpus_id": int, "score": float}`` dicts,
    sorted by decreasing score (ties: lower ``corpus_id`` first).
    """
    check_int(query_chunk_size, "query_chunk_size")
    check_int(corpus_chunk_size, "corpus_chunk_size")
    check_int(top_k, "top_k", minimum=0)
    queries = _to_matrix(query_embeddings, "query_embeddings")
    corpus = _to_matrix(corpus_embeddings, "corpus_embeddings")
    if queries.shape[1] != corpus.shape[1]:
        raise LightembedValueError(
            f"query_embeddings have dim {queries.shape[1]} but corpus_embeddings have dim "
            f"{corpus.shape[1]} (shapes {queries.shape} and {corpus.shape})"
        )

    n_queries, n_corpus = queries.shape[0], corpus.shape[0]
    queries, corpus, scorer = _chunk_scorer(score_function, queries, corpus, corpus_chunk_size)
    results: list[list[dict[str, int | float]]] = []
    for q_start in range(0, n_queries, query_chunk_size):
        q_chunk = queries[q_start : q_start + query_chunk_size]
        cand_scores: list[np.ndarray] = []
        cand_ids: list[np.ndarray] = []
        for c_start in range(0, n_corpus, corpus_chunk_size):
            c_chunk = corpus[c_start : c_start + corpus_chunk_size]
            vals, idx = _top_k_rows(scorer(q_chunk, c_chunk), top_k)
            cand_scores.append(vals)
            cand_ids.append(idx + c_start)
            if len(cand_scores) > 1:  # merge so only top_k candidates per query are kept
                merged_scores = np.concatenate(cand_scores, axis=1)
                merged_ids = np.concatenate(cand_ids, axis=1)
                best_vals, best_pos = _top_k_rows_by_id(merged_scores, merged_ids, top_k)
                cand_scores = [best_vals]
                cand_ids = [np.take_along_axis(merged_ids, best_pos, axis=1)]
        if not cand_scores:
            results.extend([] for _ in range(q_chunk.shape[0]))
            continue
        vals, ids = cand_scores[0], cand_ids[0]
        for r in range(q_chunk.shape[0]):
            results.append(
                [
                    {"corpus_id": int(cid), "score": float(score)}
                    for cid, score in zip(ids[r].tolist(), vals[r].tolist())
                ]
            )
    return results


def _top_k_rows_by_id(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_top_k_rows` on small candidate sets, breaking ties by ``ids``."""
    key = scores
    if np.issubdtype(key.dtype, np.floating) and np.isnan(key).any():
        key = np.where(np.isnan(key), -np.inf, key)
    order = np.lexsort((ids, -key), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def information_retrieval(*args: Any, **kwargs: Any) -> list[list[dict[str, int | float]]]:
    """Deprecated alias of :func:`semantic_search`."""
    return semantic_search(*args, **kwargs)


def paraphrase_mining_embeddings(
    embeddings: ArrayLike,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFunction = cos_sim,
) -> list[list[float | int]]:
    """Find the highest-scoring pairs of distinct embeddings, as sentence-transformers 6 does.

    Returns ``[score, i, j]`` triplets with ``i < j``, each pair once, highest score first. Each embedding
    contributes its ``top_k`` best other embeddings over the whole corpus (whatever ``corpus_chunk_size`` is),
    and at most ``max_pairs`` pairs are kept (the lowest-scoring ones give way). A pair is scored the first time
    it is met, so ``score_function`` is assumed symmetric.
    """
    check_int(query_chunk_size, "query_chunk_size")
    check_int(corpus_chunk_size, "corpus_chunk_size")
    check_int(max_pairs, "max_pairs")
    check_int(top_k, "top_k", minimum=0)
    emb = _to_matrix(embeddings, "embeddings")
    n = emb.shape[0]
    if score_function is cos_sim:
        emb = normalize_embeddings(emb)  # each row once, as cos_sim would per chunk
        scorer: Callable[[np.ndarray, np.ndarray], np.ndarray] = lambda q, c: q @ c.T  # noqa: E731
    else:
        scorer = lambda q, c: _scores_matrix(score_function, q, c)  # noqa: E731

    pairs: list[tuple[float, int, int]] = []  # a min-heap of (score, i, j), i < j, at most max_pairs long
    queued: set[tuple[int, int]] = set()
    min_score = float("-inf")
    for q_start in range(0, n, query_chunk_size):
        q_chunk = emb[q_start : q_start + query_chunk_size]
        best_vals: np.ndarray | None = None
        best_ids: np.ndarray | None = None
        for c_start in range(0, n, corpus_chunk_size):
            vals, idx = _top_k_rows(scorer(q_chunk, emb[c_start : c_start + corpus_chunk_size]), top_k + 1)
            idx = idx + c_start
            if best_vals is None:
                best_vals, best_ids = vals, idx
            else:
                merged_vals = np.concatenate((best_vals, vals), axis=1)
                merged_ids: np.ndarray = np.concatenate((best_ids, idx), axis=1)  # type: ignore[arg-type]  # set with best_vals
                best_vals, pos = _top_k_rows_by_id(merged_vals, merged_ids, top_k + 1)
                best_ids = np.take_along_axis(merged_ids, pos, axis=1)
        if best_vals is None:
            continue
        for row, (row_vals, row_ids) in enumerate(zip(best_vals.tolist(), best_ids.tolist())):  # type: ignore[union-attr]
            i = q_start + row
            neighbours = [(j, score) for j, score in zip(row_ids, row_vals) if j != i][:top_k]
            for j, score in neighbours:
                if score <= min_score:
                    continue
                pair = (i, j) if i < j else (j, i)
                if pair in queued:
                    continue
                queued.add(pair)
                if len(pairs) < max_pairs:
                    heapq.heappush(pairs, (score, *pair))
                else:
                    evicted = heapq.heappushpop(pairs, (score, *pair))
                    queued.discard(evicted[1:])
                    min_score = evicted[0]
    return sorted(([float(score), i, j] for score, i, j in pairs), key=lambda x: x[0], reverse=True)


def paraphrase_mining(
    model: Any,
    sentences: Sequence[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFunction = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """Encode ``sentences`` with ``model`` and return its most similar pairs.

    See :func:`paraphrase_mining_embeddings` for the result format.
    """
    embeddings = model.encode(
        sentences,
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        convert_to_numpy=True,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings,
        query_chunk_size=query_chunk_size,
        corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs,
        top_k=top_k,
        score_function=score_function,
    )


def community_detection(
    embeddings: ArrayLike,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Group embeddings into non-overlapping communities of close neighbours.

    A community is every embedding whose cosine similarity to a central point is
    at least ``threshold``; only communities with at least
    ``min_community_size`` members are returned, largest first, each its central
    point first and then its members by score (sentence-transformers 6; a
    candidate whose central point an earlier community took is dropped).
    ``show_progress_bar`` is accepted for compatibility and ignored.
    """
    check_int(batch_size, "batch_size")
    emb = _to_matrix(embeddings, "embeddings")
    n = emb.shape[0]
    if n == 0:
        return []
    check_int(min_community_size, "min_community_size")
    emb = normalize_embeddings(emb)
    min_size = min(int(min_community_size), n)
    # sentence-transformers compares against a float32 threshold tensor.
    thr = emb.dtype.type(np.float32(threshold))

    candidates: list[tuple[int, np.ndarray]] = []  # (center, members by score)
    for start in range(0, n, batch_size):
        scores = emb[start : start + batch_size] @ emb.T
        close = scores >= thr
        counts = close.sum(axis=1)
        for r in np.flatnonzero(counts >= min_size):
            members = np.flatnonzero(close[r])
            order = np.argsort(-scores[r, members], kind="stable")
            candidates.append((start + int(r), members[order]))

    candidates.sort(key=lambda c: len(c[1]), reverse=True)  # stable: equal sizes keep row order
    # sentence-transformers 6: a candidate whose center another community took is dropped, and a community lists its
    # center first, then its free members by score.
    used = np.zeros(n, dtype=bool)
    communities: list[list[int]] = []
    for center, members in candidates:
        if used[center]:
            continue
        free = members[~used[members]]
        if free.size >= min_size:
            community = [center] + [int(i) for i in free if i != center]
            communities.append(community)
            used[community] = True
    communities.sort(key=len, reverse=True)
    return communities


# --------------------------------------------------------------------------- #
# Quantization
# --------------------------------------------------------------------------- #
@overload
def quantize_embeddings(
    embeddings: list[np.ndarray],
    precision: Literal["float32", "int8", "uint8", "binary", "ubinary"],
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> list[np.ndarray]: ...


@overload
def quantize_embeddings(
    embeddings: np.ndarray,
    precision: Literal["float32", "int8", "uint8", "binary", "ubinary"],
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray: ...


def quantize_embeddings(
    embeddings: ArrayLike | list[np.ndarray],
    precision: Literal["float32", "int8", "uint8", "binary", "ubinary"],
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Quantize float embeddings to ``precision``, as sentence-transformers 6 does.

    ``"int8"``/``"uint8"`` map each dimension onto 256 buckets between the
    per-dimension minimum and maximum taken from ``ranges`` (shape ``(2, dim)``),
    else from ``calibration_embeddings``, else from ``embeddings`` itself, which
    must then hold more than one embedding (one has no range: ValueError).
    ``"binary"``/``"ubinary"`` pack the sign bits (``> 0``) into int8/uint8 bytes.
    A list of 2-D arrays (multi-vector embeddings, one (tokens, dim) array per
    input) gives a list, all quantized with the ranges of their tokens together.
    """
    if precision not in _PRECISIONS:
        raise LightembedValueError(f"Precision {precision!r} is not supported; use one of {', '.join(map(repr, _PRECISIONS))}")
    if isinstance(embeddings, list) and not embeddings:
        return []
    if isinstance(embeddings, list) and isinstance(embeddings[0], np.ndarray) and embeddings[0].ndim == 2:
        if precision.endswith("int8") and ranges is None:
            source = np.concatenate(embeddings) if calibration_embeddings is None else calibration_embeddings
            if len(source):
                ranges = _quantization_ranges(np.asarray(source), precision, calibration_embeddings)
        return [
            quantize_embeddings(np.asarray(matrix), precision, ranges=ranges, calibration_embeddings=calibration_embeddings)
            for matrix in embeddings
        ]
    if isinstance(embeddings, list) and embeddings and not isinstance(embeddings[0], (int, float)):
        embeddings = [np.asarray(e) for e in embeddings]
    try:
        emb = np.asarray(embeddings)
    except (ValueError, TypeError) as exc:
        raise LightembedValueError(f"embeddings could not be converted to a numeric array: {exc}") from None
    if emb.dtype in (np.uint8, np.int8):
        raise LightembedValueError("Embeddings to quantize must be float rather than int8 or uint8.")
    if emb.dtype == object or not (np.issubdtype(emb.dtype, np.number) or np.issubdtype(emb.dtype, np.bool_)):
        raise LightembedValueError(f"embeddings must be numeric, got an array of dtype {emb.dtype}")
    if emb.ndim == 2 and emb.shape[0] == 0:  # nothing to calibrate or pack
        width = emb.shape[1] if precision.endswith("int8") or precision == "float32" else (emb.shape[1] + 7) // 8
        dtype = np.float32 if precision == "float32" else np.int8 if precision in ("int8", "binary") else np.uint8
        return np.zeros((0, width), dtype=dtype)

    if precision == "float32":
        return emb.astype(np.float32)

    if precision in ("int8", "uint8"):
        if ranges is None:
            ranges = _quantization_ranges(emb, precision, calibration_embeddings)
        ranges = np.asarray(ranges)
        if ranges.ndim != 2 or ranges.shape[0] != 2:
            raise LightembedValueError(f"ranges must have shape (2, dim), got {ranges.shape}")
        if emb.ndim >= 1 and ranges.shape[1] not in (1, emb.shape[-1]):
            raise LightembedValueError(f"ranges has {ranges.shape[1]} columns but the embeddings have dim {emb.shape[-1]}")
        ranges = ranges.astype(np.float32, copy=False)
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((emb - starts) / steps), 0, 255)
        if precision == "uint8":
            return buckets.astype(np.uint8)
        return (buckets - 128).astype(np.int8)

    if emb.ndim == 0:
        raise LightembedValueError("embeddings must be at least 1-D for binary quantization")
    packed = np.packbits(emb > 0, axis=-1)
    if precision == "ubinary":
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)


def _quantization_ranges(emb: np.ndarray, precision: str, calibration_embeddings: Any) -> np.ndarray:
    """(2, dim) per-dimension minimum and maximum of the calibration embeddings, else of `emb` (more than one)."""
    if calibration_embeddings is not None:
        source = np.asarray(calibration_embeddings)
        if source.shape[0] == 0:
            raise LightembedValueError(
                f"Cannot compute {precision} ranges from empty calibration_embeddings; pass `ranges` or non-empty "
                "`calibration_embeddings`."
            )
    else:
        if emb.ndim == 1 or emb.shape[0] <= 1:
            raise LightembedValueError(
                f"Cannot compute {precision} quantization ranges from a single embedding. Call `quantize_embeddings` "
                "with `ranges` or `calibration_embeddings` from a representative set of embeddings instead."
            )
        if emb.shape[0] < 100:
            logger.warning(
                "Computing %s quantization buckets based on %d embeddings. %s quantization is more stable with "
                "`ranges` calculated from more embeddings or a `calibration_embeddings` that can be used to "
                "calculate the buckets.",
                precision,
                emb.shape[0],
                precision,
            )
        source = emb
    return np.vstack((np.min(source, axis=0), np.max(source, axis=0)))


_SIMILARITY_FNS: dict[SimilarityFunction, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    SimilarityFunction.COSINE: (cos_sim, pairwise_cos_sim),
    SimilarityFunction.DOT_PRODUCT: (dot_score, pairwise_dot_score),
    SimilarityFunction.EUCLIDEAN: (euclidean_sim, pairwise_euclidean_sim),
    SimilarityFunction.MANHATTAN: (manhattan_sim, pairwise_manhattan_sim),
    SimilarityFunction.MAXSIM: (maxsim, maxsim_pairwise),
    SimilarityFunction.MEAN_MAXSIM: (mean_maxsim, mean_maxsim_pairwise),
}


# sentence-transformers.util names lightembed does not provide, each with why: importing one raises an
# AttributeError (so hasattr() stays False) that says what to use instead.
_TRAINING = "a torch training helper of sentence-transformers; lightembed runs exported models (train with sentence-transformers)"
_TORCH = "it works on torch tensors; lightembed's embeddings are NumPy arrays"
_ENVIRONMENT = "it checks sentence-transformers' own torch/training environment, which lightembed does not have"
_HUB = "lightembed resolves Hub folders itself (lightembed.hub); use huggingface_hub directly"
NOT_PROVIDED: dict[str, str] = {
    **dict.fromkeys(("all_gather", "all_gather_padded", "all_gather_with_grad", "get_rank", "get_world_size",
                     "is_dist_initialized", "mine_hard_negatives", "resolve_ids", "check_teacher_targets",
                     "disable_datasets_caching", "append_to_last_row", "pairwise_angle_sim"), _TRAINING),
    **dict.fromkeys(("batch_to_device", "cat_padded_token_embeddings", "stack_padded_token_embeddings",
                     "repad_flattened_features", "compute_count_vector", "select_max_active_dims", "to_scipy_coo",
                     "truncate_embeddings"), _TORCH),
    **dict.fromkeys(("check_package_availability", "check_version_requirements", "get_device_name",
                     "is_accelerate_available", "is_datasets_available", "is_training_available",
                     "ORIGINAL_TRANSFORMER_MODELS"), _ENVIRONMENT),
    **dict.fromkeys(("http_get", "is_sentence_transformer_model", "load_dir_path", "load_file_path",
                     "disabled_tqdm", "save_to_hub_args_decorator"), _HUB),
    **dict.fromkeys(("LoggingHandler", "install_logger", "disable_logging", "fullname", "import_from_string",
                     "import_module_class"), "a sentence-transformers internal; use the standard library (logging, importlib)"),
    **dict.fromkeys(("semantic_search_faiss", "semantic_search_usearch"),
                    "search quantized embeddings with faiss or usearch directly (lightembed.util.quantize_embeddings "
                    "makes the int8/binary vectors they index); util.semantic_search searches float vectors"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in NOT_PROVIDED:
        from lightembed.unsupported import TorchOnlyAttributeError

        raise TorchOnlyAttributeError(f"lightembed.util.{name} is not provided: {NOT_PROVIDED[name]}.")
    raise AttributeError(f"module 'lightembed.util' has no attribute {name!r}")

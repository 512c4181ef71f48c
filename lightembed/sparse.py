"""Sparse embeddings without torch: a small CSR container, one-row vectors and the sparse algebra
(dot products, similarity, intersection) that works on them without densifying.

Without torch there are no sparse tensors, so SparseEncoder.encode() returns a :class:`SparseEmbeddings`: CSR
arrays (`indptr`, `indices`, `values`, `shape`) with `.toarray()`, `.to_scipy()` (needs scipy, imported only
then), `len()`, row access (`emb[i]` is a :class:`SparseVector` with `indices`/`values`) and slicing. Only
strictly positive weights are stored.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from lightembed.errors import LightembedTypeError, LightembedValueError

__all__ = ["SparseEmbeddings", "SparseVector", "as_sparse", "sparse_dot", "sparse_pairwise_dot"]

SIMILARITY_NAMES = ("dot", "cosine", "euclidean", "manhattan")
# Elements of the temporaries similarity() builds per chunk (a dense chunk of rows and the gathered products).
_SIM_BLOCK_ELEMS = 1 << 24


def _scipy_sparse() -> Any:
    try:
        import scipy.sparse as sp
    except ImportError:
        raise ImportError(
            "to_scipy() needs scipy, which lightembed does not depend on: pip install scipy. "
            "(The arrays are also available directly as .indptr, .indices and .values.)"
        ) from None
    return sp


class SparseVector:
    """One sparse embedding: the active dimensions `indices` (int64, ascending) and their `values` (float32).

    `shape` is (dim,). `toarray()` gives the dense (dim,) float32 vector, `to_dict()` {token id: weight},
    `to_scipy()` a 1 x dim scipy CSR array.
    """

    __slots__ = ("indices", "values", "dim")
    ndim = 1

    def __init__(self, indices: Any, values: Any, dim: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float32)
        self.dim = int(dim)
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise LightembedValueError("indices and values must be 1-D arrays of the same length.")

    @property
    def shape(self) -> tuple[int]:
        return (self.dim,)

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        out[self.indices] = self.values
        return out

    to_dense = toarray

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.toarray()
        return out if dtype is None else out.astype(dtype)

    def to_dict(self) -> dict[int, float]:
        return dict(zip(self.indices.tolist(), self.values.tolist()))

    def to_scipy(self) -> Any:
        return SparseEmbeddings.from_rows([self]).to_scipy()

    def __len__(self) -> int:
        return self.dim

    def __repr__(self) -> str:
        return f"SparseVector(dim={self.dim}, nnz={self.nnz})"


class SparseEmbeddings:
    """A batch of sparse embeddings in CSR form: row i's active dimensions are
    `indices[indptr[i]:indptr[i+1]]` (int64, ascending) with weights `values[...]` (float32); `shape` is
    (rows, dim).

    `len()` is the number of rows; `emb[i]` is a :class:`SparseVector`, `emb[a:b]` / `emb[[i, j]]` another
    SparseEmbeddings; iteration yields SparseVectors. `toarray()` gives the dense (rows, dim) float32 array
    (`np.asarray(emb)` too), `to_scipy()` a `scipy.sparse.csr_array` (scipy is imported only there).
    """

    __slots__ = ("indptr", "indices", "values", "shape")
    ndim = 2

    def __init__(self, indptr: Any, indices: Any, values: Any, shape: tuple[int, int]) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float32)
        self.shape = (int(shape[0]), int(shape[1]))
        if self.indptr.shape != (self.shape[0] + 1,) or self.indices.shape != self.values.shape:
            raise LightembedValueError("Inconsistent CSR arrays: indptr must have rows + 1 entries, indices and values match.")
        if self.indptr[-1] != self.values.size:
            raise LightembedValueError("indptr[-1] must equal the number of stored values.")

    @classmethod
    def from_rows(cls, rows: Sequence[SparseVector], dim: int | None = None) -> "SparseEmbeddings":
        rows = list(rows)
        if dim is None:
            if not rows:
                raise LightembedValueError("Give dim for an empty list of rows.")
            dim = rows[0].dim
        counts = np.fromiter((r.nnz for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        indices = np.concatenate([r.indices for r in rows]) if rows else np.zeros(0, np.int64)
        values = np.concatenate([r.values for r in rows]) if rows else np.zeros(0, np.float32)
        return cls(indptr, indices, values, (len(rows), dim))

    @classmethod
    def from_dense(cls, array: Any) -> "SparseEmbeddings":
        """Keep the non-zero entries of a dense (rows, dim) or (dim,) array."""
        arr = np.asarray(array, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise LightembedValueError(f"Expected a 1-D or 2-D array, got {arr.ndim}-D.")
        rows, cols = np.nonzero(arr)
        indptr = np.zeros(arr.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=arr.shape[0]), out=indptr[1:])
        return cls(indptr, cols, arr[rows, cols], arr.shape)

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def row_nnz(self) -> np.ndarray:
        """Active dimensions per row."""
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return self.shape[0]

    def _row(self, i: int) -> SparseVector:
        a, b = self.indptr[i], self.indptr[i + 1]
        return SparseVector(self.indices[a:b], self.values[a:b], self.shape[1])

    def __getitem__(self, key: Any) -> Any:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if i < -n or i >= n:
                raise IndexError(f"row {i} is out of range for {n} rows.")
            return self._row(i % n if n else i)
        if isinstance(key, slice):
            rows: range | list[int] = range(*key.indices(n))
        else:
            picked = np.arange(n)[np.asarray(key)]
            rows = picked.tolist() if picked.ndim else [int(picked)]
        return SparseEmbeddings.from_rows([self._row(i) for i in rows], self.shape[1])

    def __iter__(self) -> Iterator[SparseVector]:
        for i in range(self.shape[0]):
            yield self._row(i)

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out

    to_dense = toarray

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.toarray()
        return out if dtype is None else out.astype(dtype)

    def to_scipy(self) -> Any:
        """A `scipy.sparse.csr_array` sharing nothing with this object (needs scipy)."""
        sp = _scipy_sparse()
        make = getattr(sp, "csr_array", None) or sp.csr_matrix
        return make((self.values.copy(), self.indices.copy(), self.indptr.copy()), shape=self.shape)

    def __repr__(self) -> str:
        return f"SparseEmbeddings(shape={self.shape}, nnz={self.nnz})"


def as_sparse(x: Any, name: str = "embeddings") -> tuple[SparseEmbeddings, bool]:
    """(CSR batch, was_1d) for a SparseEmbeddings, SparseVector, list of SparseVectors, dense array or scipy matrix."""
    if isinstance(x, SparseEmbeddings):
        return x, False
    if isinstance(x, SparseVector):
        return SparseEmbeddings.from_rows([x]), True
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, SparseVector) for r in x):
        return SparseEmbeddings.from_rows(x), False
    if hasattr(x, "tocsr") and hasattr(x, "shape") and len(x.shape) == 2:  # scipy sparse
        csr = x.tocsr()
        csr.sort_indices()
        return SparseEmbeddings(csr.indptr, csr.indices, csr.data, csr.shape), False
    if x is None:
        raise LightembedTypeError(f"{name} must be embeddings, got None.")
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise LightembedTypeError(f"{name} could not be read as embeddings: {exc}") from None
    if arr.ndim not in (1, 2):
        raise LightembedValueError(f"{name} must be 1-D or 2-D, got {arr.ndim}-D.")
    return SparseEmbeddings.from_dense(arr), arr.ndim == 1


def _dense_rows(x: SparseEmbeddings, start: int, stop: int) -> np.ndarray:
    out = np.zeros((stop - start, x.shape[1]), dtype=np.float32)
    a, b = x.indptr[start], x.indptr[stop]
    rows = np.repeat(np.arange(stop - start), np.diff(x.indptr[start : stop + 1]))
    out[rows, x.indices[a:b]] = x.values[a:b]
    return out


def sparse_dot(a: SparseEmbeddings, b: SparseEmbeddings) -> np.ndarray:
    """(n, m) dot products of two CSR batches without densifying either: an inverted index over `b`'s
    dimensions, so the work is the number of (entry of a, entry of b) pairs that share a dimension. float64
    accumulation, float32 result."""
    if a.shape[1] != b.shape[1]:
        raise LightembedValueError(f"Dimension mismatch: {a.shape[1]} vs {b.shape[1]}.")
    n, m = a.shape[0], b.shape[0]
    out = np.zeros((n, m), dtype=np.float32)
    if a.nnz == 0 or b.nnz == 0:
        return out
    # b's entries grouped by dimension: entries of dimension d are order[col_ptr[d]:col_ptr[d + 1]]
    order = np.argsort(b.indices, kind="stable")
    b_rows = np.repeat(np.arange(m), np.diff(b.indptr))[order]
    b_vals = b.values[order].astype(np.float64)
    col_counts = np.bincount(b.indices, minlength=a.shape[1])
    col_ptr = np.zeros(a.shape[1] + 1, dtype=np.int64)
    np.cumsum(col_counts, out=col_ptr[1:])
    matches = col_counts[a.indices]  # b entries each entry of a meets
    # rows of a per chunk: bounded by the (rows, m) block and by the products the chunk expands to
    a_row_of_entry = np.repeat(np.arange(n), np.diff(a.indptr))
    cum = np.cumsum(np.bincount(a_row_of_entry, weights=matches, minlength=n).astype(np.int64))
    s = 0
    while s < n:
        e = min(n, s + max(1, _SIM_BLOCK_ELEMS // max(m, 1)))
        done = cum[s - 1] if s else 0
        e = max(s + 1, min(e, int(np.searchsorted(cum, done + _SIM_BLOCK_ELEMS, side="right"))))
        lo, hi = a.indptr[s], a.indptr[e]
        counts = matches[lo:hi]
        total = int(counts.sum())
        if total:
            a_rows = a_row_of_entry[lo:hi] - s
            first = np.repeat(col_ptr[a.indices[lo:hi]] - (np.cumsum(counts) - counts), counts)
            pos = first + np.arange(total)
            prod = np.repeat(a.values[lo:hi].astype(np.float64), counts) * b_vals[pos]
            target = np.repeat(a_rows, counts) * m + b_rows[pos]
            out[s:e] = np.bincount(target, weights=prod, minlength=(e - s) * m).reshape(e - s, m)
        s = e
    return out


def sparse_pairwise_dot(a: SparseEmbeddings, b: SparseEmbeddings) -> np.ndarray:
    """(n,) dot products of row i of `a` with row i of `b`."""
    if a.shape != b.shape:
        raise LightembedValueError(f"Pairwise similarity needs the same shapes, got {a.shape} and {b.shape}.")
    n = a.shape[0]
    out = np.zeros(n, dtype=np.float32)
    step = max(1, _SIM_BLOCK_ELEMS // max(a.shape[1], 1))
    for s in range(0, n, step):
        e = min(n, s + step)
        lo, hi = b.indptr[s], b.indptr[e]
        rows = np.repeat(np.arange(e - s), np.diff(b.indptr[s : e + 1]))
        prod = _dense_rows(a, s, e)[rows, b.indices[lo:hi]].astype(np.float64) * b.values[lo:hi]
        out[s:e] = np.bincount(rows, weights=prod, minlength=e - s)
    return out


def _row_norms(x: SparseEmbeddings) -> np.ndarray:
    sq = np.zeros(x.shape[0], dtype=np.float64)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    np.add.at(sq, rows, x.values.astype(np.float64) ** 2)
    return np.sqrt(sq)



def similarity(embeddings1: Any, embeddings2: Any, name: str) -> np.ndarray:
    """(n, m) float32 scores between two sets of embeddings (sparse or dense, 1-D or 2-D) with the similarity
    function `name`. Sparse inputs are never densified for dot/cosine/euclidean."""
    a, _ = as_sparse(embeddings1, "embeddings1")
    b, _ = as_sparse(embeddings2, "embeddings2")
    if name == "manhattan":
        from lightembed.util import manhattan_sim

        return np.asarray(manhattan_sim(a.toarray(), b.toarray()), dtype=np.float32)
    dots = sparse_dot(a, b)
    if name == "dot":
        return dots
    na, nb = _row_norms(a), _row_norms(b)
    if name == "cosine":
        return (dots / np.maximum(np.outer(na, nb), 1e-12)).astype(np.float32)
    sq = na[:, None] ** 2 + nb[None, :] ** 2 - 2.0 * dots
    return (-np.sqrt(np.maximum(sq, 0.0))).astype(np.float32)


def similarity_pairwise(embeddings1: Any, embeddings2: Any, name: str) -> np.ndarray:
    """(n,) float32 scores between row i of each set with the similarity function `name`."""
    a, _ = as_sparse(embeddings1, "embeddings1")
    b, _ = as_sparse(embeddings2, "embeddings2")
    if name == "manhattan":
        from lightembed.util import pairwise_manhattan_sim

        return np.asarray(pairwise_manhattan_sim(a.toarray(), b.toarray()), dtype=np.float32)
    dots = sparse_pairwise_dot(a, b)
    if name == "dot":
        return dots
    na, nb = _row_norms(a), _row_norms(b)
    if name == "cosine":
        return (dots / np.maximum(na * nb, 1e-12)).astype(np.float32)
    return (-np.sqrt(np.maximum(na**2 + nb**2 - 2.0 * dots, 0.0))).astype(np.float32)


def sparsity(embeddings: Any) -> dict[str, float]:
    """{"active_dims": mean active dimensions per row, "sparsity_ratio": 1 - active_dims / dim}."""
    csr, _ = as_sparse(embeddings)
    n, dim = csr.shape
    if n == 0 or dim == 0:
        return {"active_dims": 0.0, "sparsity_ratio": 1.0}
    active = float(np.count_nonzero(csr.values)) / n
    return {"active_dims": active, "sparsity_ratio": 1.0 - active / dim}


def intersection(embeddings_1: Any, embeddings_2: Any) -> Any:
    """Element-wise product of one embedding with one or several others, keeping the dimensions active
    (positive) in both: a SparseVector for a 1-D second argument, else SparseEmbeddings."""
    a, a_1d = as_sparse(embeddings_1, "embeddings_1")
    if not a_1d and len(a) != 1:
        raise LightembedValueError(f"Expected one embedding for embeddings_1, got shape {a.shape}.")
    b, b_1d = as_sparse(embeddings_2, "embeddings_2")
    if a.shape[1] != b.shape[1]:
        raise LightembedValueError(f"Vocab dimension mismatch: {a.shape[1]} vs {b.shape[1]}.")
    dense = a[0].toarray()
    prod = dense[b.indices] * b.values
    keep = prod > 0
    rows = np.repeat(np.arange(b.shape[0]), np.diff(b.indptr))[keep]
    indptr = np.zeros(b.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=b.shape[0]), out=indptr[1:])
    out = SparseEmbeddings(indptr, b.indices[keep], prod[keep], b.shape)
    return out[0] if b_1d else out

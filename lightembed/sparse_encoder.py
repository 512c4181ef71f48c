"""SparseEncoder: sentence-transformers' SparseEncoder (SPLADE) on an ONNX masked-LM graph, in NumPy.

The graph returns per-token vocabulary logits `logits` (batch, seq, vocab) (a fill-mask export). Pooling is
SpladePooling's: log(1 + relu(logits)) (twice log1p for "log1p_relu"), max or sum over the tokens the
attention mask keeps.

Output format
-------------
Without torch there are no sparse tensors, so encode() returns, by default, a :class:`SparseEmbeddings`: a small
CSR container (`indptr`, `indices`, `values`, `shape`) with `.toarray()`, `.to_scipy()` (needs scipy, imported
only then), `len()`, row access (`emb[i]` is a :class:`SparseVector` with `indices`/`values`) and slicing. One
text gives one :class:`SparseVector`. `convert_to_sparse_tensor=False` gives dense float32 NumPy arrays instead,
`convert_to_tensor=False` a list of per-row results. Only strictly positive weights are stored.

Memory
------
The logits of a batch are batch x seq x vocab float32 (32 x 256 x 30522 x 4 B = 1 GB). Each batch is split into
sub-batches so that rows x seq x vocab x 4 bytes stays under `max_logits_bytes` (256 MiB by default, settable in
the constructor or as an attribute; a single row always runs), and pooling works in place on the graph's output:
padding is zeroed in place, max pooling reduces over tokens first and applies relu/log1p to the (rows, vocab)
result only (log1p and relu are monotonic, so this equals pooling the transformed logits); sum pooling applies
relu/log1p in place (`out=`) before summing. Only the pooled rows' non-zero entries are kept between batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lightembed.config import max_seq_length_from, read_json, read_model_settings, read_modules
from lightembed.inputs import (
    as_text_list,
    check_batch_size,
    merge_prompts,
    pop_legacy,
    reject_multiprocess,
    resolve_prompt,
    take_sentences,
)
from lightembed.loading import check_device, load
from lightembed.progress import progress
from lightembed.tokenize import Tokenizer


__all__ = ["SparseEncoder", "SparseEmbeddings", "SparseVector"]

DEFAULT_MAX_LOGITS_BYTES = 256 * 2**20
_POOLING_STRATEGIES = ("max", "sum")
_ACTIVATIONS = ("relu", "log1p_relu")
_SIMILARITY_NAMES = ("dot", "cosine", "euclidean", "manhattan")
# Elements of the temporaries similarity() builds per chunk (a dense chunk of rows and the gathered products).
_SIM_BLOCK_ELEMS = 1 << 24


# ----- sparse containers -------------------------------------------------------------------------------
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
            raise ValueError("indices and values must be 1-D arrays of the same length.")

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
            raise ValueError("Inconsistent CSR arrays: indptr must have rows + 1 entries, indices and values match.")
        if self.indptr[-1] != self.values.size:
            raise ValueError("indptr[-1] must equal the number of stored values.")

    @classmethod
    def from_rows(cls, rows: Sequence[SparseVector], dim: int | None = None) -> "SparseEmbeddings":
        rows = list(rows)
        if dim is None:
            if not rows:
                raise ValueError("Give dim for an empty list of rows.")
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
            raise ValueError(f"Expected a 1-D or 2-D array, got {arr.ndim}-D.")
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
            rows = range(*key.indices(n))
        else:
            rows = np.arange(n)[np.asarray(key)]
            rows = rows.tolist() if rows.ndim else [int(rows)]
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
        raise TypeError(f"{name} must be embeddings, got None.")
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be read as embeddings: {exc}") from None
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got {arr.ndim}-D.")
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
        raise ValueError(f"Dimension mismatch: {a.shape[1]} vs {b.shape[1]}.")
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
        raise ValueError(f"Pairwise similarity needs the same shapes, got {a.shape} and {b.shape}.")
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


# ----- model folder -----------------------------------------------------------------------------------
@dataclass
class SpladeConfig:
    """What lightembed needs to run a SPLADE model apart from the ONNX graph."""

    folder: Path
    transformer_dir: Path
    pooling_strategy: str = "max"
    activation_function: str = "relu"
    embedding_dimension: int | None = None
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None


def load_splade_config(folder: str | Path) -> SpladeConfig:
    """Read what SparseEncoder.save_pretrained writes: modules.json with a Transformer (transformer_task
    "fill-mask") or legacy MLMTransformer, then SpladePooling. A folder without modules.json is a plain masked
    LM and gets SPLADE's defaults (max pooling, relu)."""
    folder = Path(folder)
    modules_path = folder / "modules.json"
    pooling: dict[str, Any] | None = None
    transformer_dir: Path | None = None
    entries = read_modules(folder)
    if entries is not None:
        for kind, path, type_name in entries:
            if kind in ("Transformer", "MLMTransformer"):
                if transformer_dir is not None:
                    raise ValueError(f"{modules_path} lists more than one Transformer module.")
                transformer_dir = path
            elif kind == "SpladePooling":
                pooling = read_json(path / "config.json")
            else:
                raise ValueError(
                    f"Module type {type_name!r} in {modules_path} is not supported by lightembed's "
                    "SparseEncoder (supported: a fill-mask Transformer / MLMTransformer followed by SpladePooling)."
                )
        if transformer_dir is None:
            raise ValueError(f"{modules_path} lists no Transformer module.")
        if pooling is None:
            raise ValueError(
                f"{modules_path} has no SpladePooling module; lightembed's SparseEncoder runs SPLADE models only."
            )
    else:
        transformer_dir = folder
        pooling = {}

    st_config = read_json(transformer_dir / "sentence_bert_config.json") or read_json(
        folder / "sentence_bert_config.json"
    )
    task = st_config.get("transformer_task")
    if task not in (None, "fill-mask"):
        raise ValueError(
            f"The Transformer module in {folder} has transformer_task {task!r}; SPLADE needs 'fill-mask' logits."
        )
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in _POOLING_STRATEGIES:
        raise ValueError(f"SpladePooling pooling_strategy must be one of {_POOLING_STRATEGIES}, got {strategy!r}.")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"SpladePooling activation_function must be one of {_ACTIVATIONS}, got {activation!r}.")
    dim = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
    return SpladeConfig(
        folder=folder,
        transformer_dir=transformer_dir,
        pooling_strategy=strategy,
        activation_function=activation,
        embedding_dimension=int(dim) if isinstance(dim, int) and dim > 0 else None,
        max_seq_length=max_seq_length_from(transformer_dir, st_config),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        similarity_fn_name=similarity_fn_name,
    )


def splade_pool(
    logits: np.ndarray, attention_mask: np.ndarray, strategy: str = "max", activation: str = "relu"
) -> np.ndarray:
    """SpladePooling on (rows, seq, vocab) logits -> (rows, vocab) float32. Overwrites `logits` (in place)."""
    pad = attention_mask == 0
    if pad.any():
        logits[pad] = 0.0  # what SpladePooling's logits * mask gives; relu/log1p keep 0 at 0
    if strategy == "max":
        # log1p(relu(.)) is monotonic: max first, then transform only (rows, vocab) values.
        pooled = logits.max(axis=1)
        np.maximum(pooled, 0.0, out=pooled)
        np.log1p(pooled, out=pooled)
        if activation == "log1p_relu":
            np.log1p(pooled, out=pooled)
        return pooled
    np.maximum(logits, 0.0, out=logits)
    np.log1p(logits, out=logits)
    if activation == "log1p_relu":
        np.log1p(logits, out=logits)
    return logits.sum(axis=1, dtype=np.float32)


def _top_active(pooled_row: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(pooled_row > 0)
    vals = pooled_row[idx]
    if k is not None and idx.size > k:
        keep = np.sort(np.argpartition(-vals, k - 1)[:k])
        idx, vals = idx[keep], vals[keep]
    return idx.astype(np.int64), vals.astype(np.float32, copy=True)


def _check_max_active_dims(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"max_active_dims must be a positive integer or None, got {value!r}.")
    return int(value)


class SparseEncoder:
    """SPLADE sparse embeddings from a masked-LM exported to ONNX, with sentence-transformers' SparseEncoder API.

    `model_name_or_path` is a local folder or Hub repo id as sentence-transformers' SparseEncoder.save_pretrained
    writes it (modules.json: Transformer(fill-mask) + SpladePooling), or a plain masked-LM folder (max pooling,
    relu), plus an ONNX file whose output `logits` is (batch, seq, vocab). `device`, `providers`, `threads`,
    `file_name` work as for `SentenceTransformer`.

    `max_active_dims` keeps only the largest k weights of each embedding. `max_logits_bytes` caps the logits of
    one graph run (rows x seq x vocab x 4 bytes; default 256 MiB): batches are split into sub-batches to stay
    under it. See the module docstring for the output format (`SparseEmbeddings`, `SparseVector`).
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        *,
        device: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        model_card_data: Any = None,
        backend: str = "onnx",
        similarity_fn_name: str | None = None,
        max_active_dims: int | None = None,
        file_name: str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
        **kwargs: Any,
    ) -> None:
        processor_kwargs = pop_legacy(kwargs, processor_kwargs, "tokenizer_kwargs")
        kwargs.pop("modules", None)
        if kwargs:
            raise TypeError(f"SparseEncoder() got unexpected keyword arguments: {sorted(kwargs)}.")
        del config_kwargs, model_card_data, trust_remote_code  # nothing to configure or run in an exported graph
        self.max_active_dims = _check_max_active_dims(max_active_dims)
        self.max_logits_bytes = max_logits_bytes
        loaded = load(
            model_name_or_path,
            device=device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            preferred_outputs=("logits", "token_embeddings"),
        )
        self.model_dir, self.onnx_path, self._graph = loaded.model_dir, loaded.onnx_path, loaded.graph
        self.providers, self.device = loaded.providers, loaded.device
        self.config = load_splade_config(self.model_dir)
        out = next(o for o in self._graph.session.get_outputs() if o.name == self._graph.output_name)
        if out.shape is not None and len(out.shape) != 3:
            raise ValueError(
                f"The ONNX graph's output {out.name!r} has shape {out.shape}; SPLADE needs per-token vocabulary "
                "logits (batch, seq, vocab) from a fill-mask (masked-LM) export."
            )
        if out.name in ("last_hidden_state", "sentence_embedding", "pooler_output"):
            raise ValueError(
                f"The ONNX graph outputs {out.name!r} (hidden states); SPLADE needs per-token vocabulary logits from "
                "a fill-mask (masked-LM) export. Is this an embedding model? Use SentenceTransformer."
            )
        max_length = self.config.max_seq_length
        if processor_kwargs and processor_kwargs.get("model_max_length") is not None:
            max_length = processor_kwargs["model_max_length"]
        self.tokenizer_wrapper = Tokenizer.from_dir(self.config.transformer_dir, max_length, self.config.do_lower_case)
        self._vocab_size = self._find_vocab_size()

        self.prompts, self.default_prompt_name = merge_prompts(
            self.config.prompts, self.config.default_prompt_name, prompts, default_prompt_name
        )
        self.similarity_fn_name = similarity_fn_name or self.config.similarity_fn_name or "dot"

    def _find_vocab_size(self) -> int | None:
        if self._graph.output_width is not None:
            return int(self._graph.output_width)
        if self.config.embedding_dimension:
            return self.config.embedding_dimension
        hf = read_json(self.config.transformer_dir / "config.json")
        if isinstance(hf.get("vocab_size"), int):
            return int(hf["vocab_size"])
        return self.tokenizer_wrapper.backend.get_vocab_size(with_added_tokens=True) or None

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def similarity_fn_name(self) -> str:
        """ "dot" (the default for sparse models), "cosine", "euclidean" or "manhattan"."""
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: Any) -> None:
        value = getattr(value, "value", value)  # a SimilarityFunction enum member
        if value not in _SIMILARITY_NAMES:
            raise ValueError(f"similarity_fn_name must be one of {_SIMILARITY_NAMES}, got {value!r}.")
        self._similarity_fn_name = value

    @property
    def max_seq_length(self) -> int | None:
        """Inputs longer than this many tokens (special tokens included) are truncated."""
        return self.tokenizer_wrapper.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self.tokenizer_wrapper.max_length = value

    @property
    def tokenizer(self) -> Any:
        """The underlying `tokenizers.Tokenizer`."""
        return self.tokenizer_wrapper.backend

    @property
    def pooling_strategy(self) -> str:
        return self.config.pooling_strategy

    @property
    def activation_function(self) -> str:
        return self.config.activation_function

    def get_max_seq_length(self) -> int | None:
        return self.max_seq_length

    def get_embedding_dimension(self) -> int | None:
        """Vocabulary size: the dimension of the embeddings encode() returns."""
        return self._vocab_size

    def get_sentence_embedding_dimension(self) -> int | None:
        return self.get_embedding_dimension()

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts, _ = as_text_list(texts, "texts")
        return self.tokenizer_wrapper(texts).as_dict()

    # ----- encoding ---------------------------------------------------------------------------------
    def encode(
        self,
        inputs: str | Sequence[str] | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = True,
        convert_to_sparse_tensor: bool = True,
        save_to_cpu: bool = False,
        device: str | None = None,
        max_active_dims: int | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Sparse embeddings of one text or a list of texts, in input order.

        Returns a :class:`SparseEmbeddings` (n, vocab) for a list and a :class:`SparseVector` for one string;
        `convert_to_sparse_tensor=False` gives dense float32 NumPy arrays ((n, vocab) / (vocab,)) instead;
        `convert_to_tensor=False` a list with one SparseVector (or 1-D array) per text. `max_active_dims` keeps
        the k largest weights per text (default: the model's). `save_to_cpu` has no effect (results are NumPy).
        """
        inputs = take_sentences(inputs, kwargs)
        kwargs.pop("task", None)  # routing by task needs a Router module, which SPLADE models don't have
        if kwargs.pop("processing_kwargs", None):
            raise ValueError("processing_kwargs is not supported by lightembed; set max_seq_length instead.")
        if kwargs:
            raise ValueError(f"encode() got keyword arguments it does not use: {sorted(kwargs)}.")
        del save_to_cpu
        reject_multiprocess(device, pool, chunk_size, "encode()")
        check_device(device, self.device, type(self).__name__)
        texts, single = as_text_list(inputs)
        batch_size = check_batch_size(batch_size)
        k = _check_max_active_dims(max_active_dims)
        k = k if k is not None else self.max_active_dims
        resolved = resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)
        if resolved:
            texts = [resolved + text for text in texts]

        rows, dim = self._embed(texts, batch_size, bool(show_progress_bar), k)
        emb = SparseEmbeddings.from_rows(rows, dim)
        if convert_to_sparse_tensor:
            if single:
                return emb[0]
            return emb if convert_to_tensor else list(emb)
        dense = emb.toarray()
        if single:
            return dense[0]
        return dense if convert_to_tensor else list(dense)

    def _embed(
        self, texts: list[str], batch_size: int, show_progress_bar: bool, k: int | None
    ) -> tuple[list[SparseVector], int]:
        rows: list[SparseVector | None] = [None] * len(texts)
        budget = self.max_logits_bytes
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"max_logits_bytes must be a positive integer, got {budget!r}.")
        dim = self._vocab_size
        left = self.tokenizer_wrapper.padding_side == "left"
        batches = progress(
            self.tokenizer_wrapper.batches(texts, batch_size), show_progress_bar, "Batches",
            total=-(-len(texts) // batch_size),
        )
        for idx, batch in batches:
            arrays = batch.as_dict()
            n_rows, width = batch.input_ids.shape
            # Logits of one run: rows x width x vocab float32. An unknown vocab runs one row first to learn it.
            step = max(1, budget // (width * dim * 4)) if dim else 1
            start = 0
            while start < n_rows:
                stop = min(n_rows, start + step)
                longest = int(batch.lengths[start:stop].max())
                cols = slice(width - longest, width) if left else slice(0, longest)
                sub = {name: arr[start:stop, cols] for name, arr in arrays.items()}
                logits = self._graph(sub)
                if logits.ndim != 3:
                    raise ValueError(f"The ONNX graph returned logits of shape {logits.shape}; expected 3-D.")
                if not logits.flags.writeable:
                    logits = logits.copy()
                if dim != logits.shape[2]:
                    dim = int(logits.shape[2])
                    self._vocab_size = dim
                    step = max(1, budget // (width * dim * 4))
                pooled = splade_pool(
                    logits, sub["attention_mask"], self.config.pooling_strategy, self.config.activation_function
                )
                del logits
                for r, i in enumerate(idx[start:stop]):
                    rows[i] = SparseVector(*_top_active(pooled[r], k), dim)
                start = stop
        return rows, int(dim or 0)  # type: ignore[return-value]

    def encode_query(self, inputs: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """encode() with the "query" prompt when the model has one and no prompt was given."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(inputs, **kwargs)

    def encode_document(self, inputs: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """encode() with the first of the "document", "passage", "corpus" prompts the model has, when no prompt
        was given."""
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(inputs, **kwargs)

    # ----- similarity & inspection -----------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n, m) float32 scores between two sets of embeddings (sparse or dense, 1-D or 2-D) with the model's
        similarity function ("dot" unless configured otherwise). Sparse inputs are never densified for dot/cosine."""
        a, _ = as_sparse(embeddings1, "embeddings1")
        b, _ = as_sparse(embeddings2, "embeddings2")
        name = self.similarity_fn_name
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

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n,) float32 scores between row i of each set with the model's similarity function."""
        a, _ = as_sparse(embeddings1, "embeddings1")
        b, _ = as_sparse(embeddings2, "embeddings2")
        name = self.similarity_fn_name
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

    def decode(self, embeddings: Any, top_k: int | None = None) -> list[Any]:
        """(token, weight) pairs sorted by weight, highest first: a list for one embedding (SparseVector or 1-D
        array), a list of such lists for several. `top_k` keeps the k heaviest tokens of each."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
        csr, was_1d = as_sparse(embeddings)
        tokenizer = self.tokenizer_wrapper.backend
        results = []
        for row in csr:
            nz = row.values != 0
            ids, vals = row.indices[nz], row.values[nz]
            order = np.argsort(-vals, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            results.append([(tokenizer.id_to_token(int(i)), float(v)) for i, v in zip(ids[order], vals[order])])
        return results[0] if was_1d else results

    @staticmethod
    def sparsity(embeddings: Any) -> dict[str, float]:
        """{"active_dims": mean active dimensions per row, "sparsity_ratio": 1 - active_dims / dim}."""
        csr, _ = as_sparse(embeddings)
        n, dim = csr.shape
        if n == 0 or dim == 0:
            return {"active_dims": 0.0, "sparsity_ratio": 1.0}
        active = float(np.count_nonzero(csr.values)) / n
        return {"active_dims": active, "sparsity_ratio": 1.0 - active / dim}

    @staticmethod
    def intersection(embeddings_1: Any, embeddings_2: Any) -> Any:
        """Element-wise product of one embedding with one or several others, keeping the dimensions active
        (positive) in both: a SparseVector for a 1-D second argument, else SparseEmbeddings."""
        a, a_1d = as_sparse(embeddings_1, "embeddings_1")
        if not a_1d and len(a) != 1:
            raise ValueError(f"Expected one embedding for embeddings_1, got shape {a.shape}.")
        b, b_1d = as_sparse(embeddings_2, "embeddings_2")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"Vocab dimension mismatch: {a.shape[1]} vs {b.shape[1]}.")
        dense = a[0].toarray()
        prod = dense[b.indices] * b.values
        keep = prod > 0
        rows = np.repeat(np.arange(b.shape[0]), np.diff(b.indptr))[keep]
        indptr = np.zeros(b.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=b.shape[0]), out=indptr[1:])
        out = SparseEmbeddings(indptr, b.indices[keep], prod[keep], b.shape)
        return out[0] if b_1d else out

    def __repr__(self) -> str:
        if not hasattr(self, "_similarity_fn_name"):  # failed or unfinished __init__
            return "SparseEncoder(<not loaded>)"
        return (
            f"SparseEncoder(path={str(self.model_dir)!r}, onnx={self.onnx_path.name!r}, "
            f"pooling={self.pooling_strategy}/{self.activation_function}, max_seq_length={self.max_seq_length}, "
            f"dim={self.get_embedding_dimension()}, max_active_dims={self.max_active_dims}, "
            f"providers={self._graph.session.get_providers()})"
        )

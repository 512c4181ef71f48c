"""SparseEncoder: sentence-transformers' SparseEncoder (SPLADE) on an ONNX masked-LM graph, in NumPy.

The graph returns per-token vocabulary logits `logits` (batch, seq, vocab) (a fill-mask export). Pooling is
SpladePooling's: log(1 + relu(logits)) (twice log1p for "log1p_relu"), max or sum over the tokens the
attention mask keeps. Results are :class:`lightembed.sparse.SparseEmbeddings` (see that module).

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

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence, overload

import numpy as np

from lightembed import bge_m3, sparse
from lightembed.base import SIMILARITY_NAMES, EmbeddingModel, ModelSetup
from lightembed.config import (
    TransformerSettings,
    read_json,
    read_model_settings,
    read_modules,
    read_transformer_settings,
)
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.inputs import as_text_list, check_batch_size, check_int, pop_legacy, take_sentences
from lightembed.router import RouterConfig, read_router, split_routes
from lightembed.sparse import SparseEmbeddings, SparseVector
from lightembed.static import SPARSE_STATIC_MODULE, sparse_static_dir, tokenizer_max_length
from lightembed.tokenize import Batch

__all__ = ["SparseEncoder", "SparseEmbeddings", "SparseVector"]

DEFAULT_MAX_LOGITS_BYTES = 256 * 2**20
_POOLING_STRATEGIES = ("max", "sum")
_ACTIVATIONS = ("relu", "log1p_relu")


# ----- model folder -----------------------------------------------------------------------------------
@dataclass
class SpladeConfig:
    """What lightembed needs to run a SPLADE model apart from the ONNX graph."""

    folder: Path
    transformer_dir: Path
    settings: TransformerSettings
    pooling_strategy: str = "max"
    activation_function: str = "relu"
    embedding_dimension: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    static: bool = False
    """A SparseStaticEmbedding (a weight per token, no transformer): the graph gives each text's weights itself."""


def load_splade_config(folder: str | Path) -> SpladeConfig:
    """Read what SparseEncoder.save_pretrained writes: modules.json with a Transformer (transformer_task
    "fill-mask") or legacy MLMTransformer, then SpladePooling. A folder without modules.json is a plain masked
    LM and gets SPLADE's defaults (max pooling, relu)."""
    folder = Path(folder)
    modules_path = folder / "modules.json"
    pooling: dict[str, Any] | None = None
    transformer_dir: Path | None = None
    entries = read_modules(folder)
    weights_dir = sparse_static_dir(entries)
    if weights_dir is not None:
        assert entries is not None
        if len(entries) > 1:
            raise LightembedValueError(
                f"{modules_path} lists modules after its {SPARSE_STATIC_MODULE}; lightembed runs that module alone."
            )
        prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
        settings = TransformerSettings(tokenizer_max_length(weights_dir), False, None, None)
        return SpladeConfig(folder, weights_dir, settings, prompts=prompts, default_prompt_name=default_prompt_name,
                            similarity_fn_name=similarity_fn_name, static=True)  # fmt: skip
    if entries is not None:
        for kind, path, type_name in entries:
            if kind in ("Transformer", "MLMTransformer"):
                if transformer_dir is not None:
                    raise LightembedValueError(f"{modules_path} lists more than one Transformer module.")
                transformer_dir = path
            elif kind == "SpladePooling":
                pooling = read_json(path / "config.json")
            else:
                raise LightembedValueError(
                    f"Module type {type_name!r} in {modules_path} is not supported by lightembed's "
                    "SparseEncoder (supported: a fill-mask Transformer / MLMTransformer followed by SpladePooling)."
                )
        if transformer_dir is None:
            raise LightembedValueError(f"{modules_path} lists no Transformer module.")
        if pooling is None:
            raise LightembedValueError(
                f"{modules_path} has no SpladePooling module; lightembed's SparseEncoder runs SPLADE models only."
            )
    else:
        transformer_dir = folder
        pooling = {}

    settings = read_transformer_settings(transformer_dir, folder)
    task = settings.transformer_task
    if task not in (None, "fill-mask"):
        raise LightembedValueError(
            f"The Transformer module in {folder} has transformer_task {task!r}; SPLADE needs 'fill-mask' logits."
        )
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in _POOLING_STRATEGIES:
        raise LightembedValueError(f"SpladePooling pooling_strategy must be one of {_POOLING_STRATEGIES}, got {strategy!r}.")
    if activation not in _ACTIVATIONS:
        raise LightembedValueError(f"SpladePooling activation_function must be one of {_ACTIVATIONS}, got {activation!r}.")
    dim = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
    return SpladeConfig(
        folder=folder,
        transformer_dir=transformer_dir,
        settings=settings,
        pooling_strategy=strategy,
        activation_function=activation,
        embedding_dimension=int(dim) if isinstance(dim, int) and dim > 0 else None,
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


def _bge_m3_config(folder: Path) -> tuple[SpladeConfig, np.ndarray]:
    """A BGE-M3 folder as a sparse encoder (its lexical weights: max over tokens, no activation on top) and the
    token ids its lexical weights leave out."""
    entries = read_modules(folder) or []
    transformer_dir = next((path for kind, path, _ in entries if kind == "Transformer"), folder)
    hf = read_json(transformer_dir / "config.json")
    vocab = hf.get("vocab_size") if isinstance(hf.get("vocab_size"), int) else None
    from tokenizers import Tokenizer as HFTokenizer

    backend = HFTokenizer.from_file(str(transformer_dir / "tokenizer.json"))
    config = SpladeConfig(folder, transformer_dir, read_transformer_settings(transformer_dir, folder), "max", "relu", vocab)
    return config, bge_m3.special_token_ids(transformer_dir, backend.token_to_id)


def _scatter(ids: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    row = np.zeros(size, dtype=np.float32)
    row[ids] = weights
    return row


def _top_active(pooled_row: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(pooled_row > 0)
    vals = pooled_row[idx]
    if k is not None and idx.size > k:
        keep = np.sort(np.argpartition(-vals, k - 1)[:k])
        idx, vals = idx[keep], vals[keep]
    return idx.astype(np.int64), vals.astype(np.float32, copy=True)


def _check_max_active_dims(value: Any) -> int | None:
    return None if value is None else check_int(value, "max_active_dims")


class SparseEncoder(EmbeddingModel):
    """SPLADE sparse embeddings from a masked-LM exported to ONNX, with sentence-transformers' SparseEncoder API.

    `model_name_or_path` is a local folder or Hub repo id as sentence-transformers' SparseEncoder.save_pretrained
    writes it (modules.json: Transformer(fill-mask) + SpladePooling), or a plain masked-LM folder (max pooling,
    relu), plus an ONNX file whose output `logits` is (batch, seq, vocab). `device`, `providers`, `threads`,
    `file_name`, `max_batch_tokens` and `verify` work as for `SentenceTransformer`.

    `max_active_dims` keeps only the largest k weights of each embedding. `max_logits_bytes` caps the logits of
    one graph run (rows x seq x vocab x 4 bytes; default 256 MiB): batches are split into sub-batches to stay
    under it. See the module docstring for the output format (`SparseEmbeddings`, `SparseVector`).
    """

    _preferred_outputs = ("logits", "token_embeddings")
    _default_similarity = "dot"
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = SIMILARITY_NAMES

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
        backend: str | None = "onnx",
        similarity_fn_name: str | None = None,
        max_active_dims: int | None = None,
        file_name: str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        preoptimized: bool | None = None,
        spinning: bool | None = None,
        **kwargs: Any,
    ) -> None:
        processor_kwargs = pop_legacy(kwargs, processor_kwargs, "tokenizer_kwargs")
        kwargs.pop("modules", None)
        if kwargs:
            raise LightembedTypeError(f"SparseEncoder() got unexpected keyword arguments: {sorted(kwargs)}.")
        del config_kwargs, model_card_data, trust_remote_code  # nothing to configure or run in an exported graph
        self.max_active_dims = _check_max_active_dims(max_active_dims)
        self.max_logits_bytes = max_logits_bytes
        local = Path(model_name_or_path) if isinstance(model_name_or_path, (str, Path)) else None
        self.router: RouterConfig | None = read_router(local) if local is not None and local.is_dir() else None
        """A Router model's routes (lightembed.router), e.g. inference-free SPLADE: a SparseStaticEmbedding for
        queries, a SPLADE transformer for documents; None for any other model."""
        self.routes: dict[str, SparseEncoder] = {}
        """A Router model's other routes, each a model of its own; this model runs the default route."""
        if self.router is not None:
            shared: dict[str, Any] = dict(device=device, providers=providers, threads=threads, backend=backend,
                          max_active_dims=max_active_dims, max_logits_bytes=max_logits_bytes,
                          max_batch_tokens=max_batch_tokens, verify=verify, preoptimized=preoptimized,
                          spinning=spinning)  # fmt: skip
            model_name_or_path, self.routes = split_routes(self.router, self, lambda view: SparseEncoder(view, **shared))
        elif backend == "onnx" and local is not None and local.is_dir() and sparse_static_dir(read_modules(local)):
            backend = None  # the default names the graph runtime; a table of token weights runs in NumPy
        max_length = None
        if processor_kwargs and processor_kwargs.get("model_max_length") is not None:
            max_length = processor_kwargs["model_max_length"]
        super().__init__(
            model_name_or_path,
            device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            similarity_fn_name=similarity_fn_name,
            max_seq_length=max_length,
            max_batch_tokens=max_batch_tokens,
            verify=verify,
            preoptimized=preoptimized,
            spinning=spinning,
        )
        self._vocab_size = self._find_vocab_size()
        if self.config.static:  # SparseStaticEmbedding tokenizes without special tokens
            self.tokenizer_wrapper.set_rules(add_special_tokens=False, offsets=False)

    def _setup(self) -> ModelSetup:
        self._lexical_ids: np.ndarray | None = None
        if bge_m3.has_heads(self._graph):  # BGE-M3: its lexical weights are the sparse embeddings
            self.config, self._lexical_ids = _bge_m3_config(self.model_dir)
            c = self.config
            return ModelSetup(c.transformer_dir, c.settings, c.prompts, c.default_prompt_name, c.similarity_fn_name)
        self.config = load_splade_config(self.model_dir)
        c = self.config
        if c.static:
            return ModelSetup(c.transformer_dir, c.settings, c.prompts, c.default_prompt_name, c.similarity_fn_name)
        name, shape = self._graph.output_name, self._graph.output_shape()
        if shape is not None and len(shape) != 3:
            raise LightembedValueError(
                f"The ONNX graph's output {name!r} has shape {shape}; SPLADE needs per-token vocabulary "
                "logits (batch, seq, vocab) from a fill-mask (masked-LM) export."
            )
        if name in ("last_hidden_state", "sentence_embedding", "pooler_output"):
            raise LightembedValueError(
                f"The ONNX graph outputs {name!r} (hidden states); SPLADE needs per-token vocabulary logits from "
                "a fill-mask (masked-LM) export. Is this an embedding model? Use SentenceTransformer."
            )
        c = self.config
        return ModelSetup(c.transformer_dir, c.settings, c.prompts, c.default_prompt_name, c.similarity_fn_name)

    def _find_vocab_size(self) -> int | None:
        if self._graph.output_width is not None and self._lexical_ids is None:
            return int(self._graph.output_width)
        if self.config.embedding_dimension:
            return self.config.embedding_dimension
        hf = read_json(self.config.transformer_dir / "config.json")
        if isinstance(hf.get("vocab_size"), int):
            return int(hf["vocab_size"])
        return self.tokenizer_wrapper.backend.get_vocab_size(with_added_tokens=True) or None

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def pooling_strategy(self) -> str:
        return self.config.pooling_strategy

    @property
    def activation_function(self) -> str:
        return self.config.activation_function

    def get_embedding_dimension(self) -> int | None:
        """Vocabulary size: the dimension of the embeddings encode() returns."""
        return self._vocab_size

    def get_sentence_embedding_dimension(self) -> int | None:
        return self.get_embedding_dimension()

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts, _ = as_text_list(texts, "texts")
        return self.pad(self.tokenize_inputs(texts)).as_dict()

    # ----- encoding ---------------------------------------------------------------------------------
    def forward(self, batch: Batch, max_active_dims: int | None = None) -> list[SparseVector]:
        """Sparse embeddings of one padded batch, one SparseVector per row (the `max_active_dims` largest
        weights), run in sub-batches whose logits stay under `max_logits_bytes`."""
        if self._lexical_ids is not None:
            weights = self._graph(batch.as_dict(), bge_m3.SPARSE_OUTPUT)
            vocab = int(self._vocab_size or 0)
            return [
                SparseVector(*_top_active(_scatter(ids, w, vocab), max_active_dims), vocab)
                for ids, w in bge_m3.lexical_rows(weights, batch.input_ids, batch.lengths, self._lexical_ids)
            ]
        budget = self.max_logits_bytes
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise LightembedValueError(f"max_logits_bytes must be a positive integer, got {budget!r}.")
        dim = self._vocab_size
        left = self.tokenizer_wrapper.padding_side == "left"
        arrays = batch.as_dict()
        n_rows, width = batch.input_ids.shape
        # Logits of one run: rows x width x vocab float32. An unknown vocab runs one row first to learn it.
        step = max(1, budget // (width * dim * 4)) if dim else 1
        rows: list[SparseVector] = []
        if self.config.static:  # a table of token weights: (rows, vocab) already
            weights = self._graph(arrays)
            return [SparseVector(*_top_active(row, max_active_dims), weights.shape[1]) for row in weights]
        start = 0
        while start < n_rows:
            stop = min(n_rows, start + step)
            longest = int(batch.lengths[start:stop].max())
            cols = slice(width - longest, width) if left else slice(0, longest)
            sub = {name: arr[start:stop, cols] for name, arr in arrays.items()}
            logits = self._graph(sub)
            if logits.ndim != 3:
                raise LightembedValueError(f"The ONNX graph returned logits of shape {logits.shape}; expected 3-D.")
            if not logits.flags.writeable:
                logits = logits.copy()
            if dim != logits.shape[2]:
                dim = int(logits.shape[2])
                self._vocab_size = dim
                step = max(1, budget // (width * dim * 4))
            vocab = int(logits.shape[2])
            pooled = splade_pool(
                logits, sub["attention_mask"], self.config.pooling_strategy, self.config.activation_function
            )
            del logits
            rows.extend(SparseVector(*_top_active(pooled[r], max_active_dims), vocab) for r in range(stop - start))
            start = stop
        return rows

    @overload
    def encode(
        self,
        inputs: str,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        convert_to_tensor: bool = ...,
        convert_to_sparse_tensor: Literal[True] = ...,
        save_to_cpu: bool = ...,
        device: str | None = ...,
        max_active_dims: int | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> SparseVector: ...

    @overload
    def encode(
        self,
        inputs: Sequence[str] | np.ndarray,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        convert_to_tensor: Literal[True] = ...,
        convert_to_sparse_tensor: Literal[True] = ...,
        save_to_cpu: bool = ...,
        device: str | None = ...,
        max_active_dims: int | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> SparseEmbeddings: ...

    @overload
    def encode(
        self,
        inputs: str | Sequence[str] | np.ndarray,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        convert_to_tensor: bool = ...,
        convert_to_sparse_tensor: bool = ...,
        save_to_cpu: bool = ...,
        device: str | None = ...,
        max_active_dims: int | None = ...,
        pool: Any = ...,
        chunk_size: int | None = ...,
        **kwargs: Any,
    ) -> np.ndarray | list[Any]: ...

    def encode(
        self,
        inputs: str | Sequence[str] | np.ndarray | None = None,
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
        route = self._other_route(kwargs)
        if route is not None:
            return route.encode(
                inputs, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                show_progress_bar=show_progress_bar, convert_to_tensor=convert_to_tensor,
                convert_to_sparse_tensor=convert_to_sparse_tensor, device=device, max_active_dims=max_active_dims,
                pool=pool, chunk_size=chunk_size, **kwargs,
            )  # fmt: skip
        del save_to_cpu
        if self._uses_pool(pool, device):
            from lightembed.pool import encode_sparse

            return encode_sparse(
                self, inputs, pool, device, chunk_size, kwargs, show_progress_bar=show_progress_bar,
                convert_to_tensor=convert_to_tensor, convert_to_sparse_tensor=convert_to_sparse_tensor,
                prompt_name=prompt_name, prompt=prompt, batch_size=batch_size, max_active_dims=max_active_dims,
            )  # fmt: skip
        self._check_call("encode()", device, kwargs)
        texts, single = as_text_list(inputs)
        batch_size = check_batch_size(batch_size)
        k = _check_max_active_dims(max_active_dims)
        k = k if k is not None else self.max_active_dims
        resolved = self._prompt(prompt, prompt_name)
        if resolved:
            texts = [resolved + text for text in texts]

        rows: list[Any] = [None] * len(texts)
        for idx, batch in self._batches(texts, batch_size, show_progress_bar):
            for i, row in zip(idx, self.forward(batch, k)):
                rows[i] = row
        return self._finish(rows, single, convert_to_tensor, convert_to_sparse_tensor)

    def _finish(self, rows: list[Any], single: bool, convert_to_tensor: bool, convert_to_sparse_tensor: bool) -> Any:
        """The output form encode() promises for per-text SparseVector rows (also for the pool's rows)."""
        emb = SparseEmbeddings.from_rows(rows, int(self._vocab_size or 0))
        if convert_to_sparse_tensor:
            if single:
                return emb[0]
            return emb if convert_to_tensor else list(emb)
        dense = emb.toarray()
        if single:
            return dense[0]
        return dense if convert_to_tensor else list(dense)

    # ----- similarity & inspection -----------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n, m) float32 scores between two sets of embeddings (sparse or dense, 1-D or 2-D) with the model's
        similarity function ("dot" unless configured otherwise). Sparse inputs are never densified for dot/cosine."""
        return sparse.similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n,) float32 scores between row i of each set with the model's similarity function."""
        return sparse.similarity_pairwise(embeddings1, embeddings2, self.similarity_fn_name)

    def decode(self, embeddings: Any, top_k: int | None = None) -> list[Any]:
        """(token, weight) pairs sorted by weight, highest first: a list for one embedding (SparseVector or 1-D
        array), a list of such lists for several. `top_k` keeps the k heaviest tokens of each."""
        if top_k is not None:
            top_k = check_int(top_k, "top_k")
        csr, was_1d = sparse.as_sparse(embeddings)
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

    sparsity = staticmethod(sparse.sparsity)
    intersection = staticmethod(sparse.intersection)

    @property
    def splade_pooling_chunk_size(self) -> int | None:
        """None: lightembed pools each sub-batch's whole sequence; it bounds memory with `max_logits_bytes`."""
        return None

    @splade_pooling_chunk_size.setter
    def splade_pooling_chunk_size(self, value: int | None) -> None:
        if value is not None:
            check_int(value, "splade_pooling_chunk_size")
            warnings.warn(
                "splade_pooling_chunk_size has no effect in lightembed: set max_logits_bytes (bytes of logits per "
                f"graph run, now {self.max_logits_bytes}) to bound memory instead.",
                UserWarning,
                stacklevel=2,
            )

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        """Nothing to set: a SPLADE model has no Pooling module (sentence-transformers does nothing here either)."""
        warnings.warn(
            "set_pooling_include_prompt() has no effect: this SPLADE model pools with SpladePooling, which always "
            "includes the prompt's tokens.",
            UserWarning,
            stacklevel=2,
        )

    def _repr_fields(self) -> dict[str, Any]:
        return {
            "pooling": f"{self.pooling_strategy}/{self.activation_function}",
            "max_seq_length": self.max_seq_length,
            "dim": self.get_embedding_dimension(),
            "max_active_dims": self.max_active_dims,
        }

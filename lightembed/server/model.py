"""`ServedModel`: what the server needs of a loaded model, and nothing more.

Every lightembed model class (SentenceTransformer, CrossEncoder, SparseEncoder) satisfies it; the server touches
models only through these names, so the load path can change behind them.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class ServedModel(Protocol):
    """The stages and properties the server uses.

    Stages (run by the batcher, in the model's worker thread): `tokenize_inputs(items)` (texts or (text, text)
    pairs to unpadded encodings with `.ids`, `.overflowing`, `.offsets`, `.special_tokens_mask`),
    `plan(encodings, batch_size)` (indices of each batch under `max_batch_tokens`), `pad(encodings)` (a batch
    with `.input_ids`) and `forward(batch, **options)` (one result row per input). Properties: `max_seq_length`, `max_batch_tokens` (set by the
    server from --max-batch-tokens), `device`, `prompts` and `default_prompt_name`, `tokenizer` (a
    `tokenizers.Tokenizer`, for /tokenize and /decode) and `config`.

    Kind-specific members are read only for their kind: see EmbeddingModel and MultiVectorModel; `num_labels`
    (cross-encoders), `max_active_dims` (sparse models).
    """

    max_batch_tokens: int | None
    prompts: Mapping[str, str]
    default_prompt_name: str | None

    @property
    def max_seq_length(self) -> int | None: ...

    @property
    def device(self) -> str: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def config(self) -> Any: ...

    def tokenize_inputs(self, items: Sequence[Any]) -> list[Any]: ...

    def plan(self, encodings: Sequence[Any], batch_size: int) -> list[np.ndarray]: ...

    def pad(self, encodings: Sequence[Any]) -> Any: ...

    def forward(self, batch: Any, **options: Any) -> Any: ...


@runtime_checkable
class EmbeddingModel(ServedModel, Protocol):
    """A served SentenceTransformer: also `encode` (for token embeddings, /embed_all), `prompt_length` and
    `get_sentence_embedding_dimension`."""

    def encode(self, inputs: Any, **options: Any) -> Any: ...

    def prompt_length(self, prompt: str | None) -> int | None: ...

    def get_sentence_embedding_dimension(self) -> int | None: ...


@runtime_checkable
class RerankModel(ServedModel, Protocol):
    """A served CrossEncoder: also `num_labels`, and `pair_inputs` (a prompt where the model takes it)."""

    num_labels: int

    def pair_inputs(self, pairs: Sequence[tuple[str, str]], prompt: str | None) -> list[Any]: ...


@runtime_checkable
class SparseModel(ServedModel, Protocol):
    """A served SparseEncoder: also `max_active_dims`."""

    max_active_dims: int | None


@runtime_checkable
class MultiVectorModel(ServedModel, Protocol):
    """A served MultiVectorEncoder: also `encode_query`, `encode_document` (one (tokens, dim) array per input)
    and `get_embedding_dimension`."""

    def encode_query(self, inputs: Any = None, **options: Any) -> Any: ...

    def encode_document(self, inputs: Any = None, **options: Any) -> Any: ...

    def get_embedding_dimension(self) -> int | None: ...

"""Texts longer than the model: one vector per chunk of tokens, with the chunk's character offsets, and a document
vector made of them. Built on the model's stages (tokenize windows, plan, pad, forward).

Two ways to chunk (`SentenceTransformer.encode_chunks`):
- windows (default): the text is cut into windows of `chunk_size` tokens (special tokens included; default the
  model's max_seq_length) that share `overlap` tokens, and each window is embedded on its own, as the model embeds
  any input;
- late chunking (`late_chunking=True`): the whole text runs through the model once, so every token sees all of it
  (only where the model's positions hold the whole text), and each chunk is the mean of its tokens' embeddings
  over the same spans, followed by the model's modules after pooling (Dense, Normalize).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from tokenizers import Encoding

from lightembed.errors import LightembedValueError
from lightembed.inputs import as_text_list, check_batch_size, check_int
from lightembed.modules import l2_normalize

if TYPE_CHECKING:
    from lightembed.encoder import SentenceTransformer


class ChunkingError(LightembedValueError):
    """A chunking option or a text encode_chunks cannot chunk; `field` names it: "chunk_size", "overlap",
    "late_chunking", or "inputs[i]" (a text too long for late chunking)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ChunkedText:
    """One text's chunks: their vectors (chunks, dim), character spans into the text, and token counts."""

    embeddings: np.ndarray
    offsets: list[tuple[int, int]]
    """(start, end) character offsets of each chunk: text[start:end] is what the chunk covers."""
    token_counts: np.ndarray
    """Tokens of the text in each chunk (special tokens not counted)."""
    normalized: bool
    """Whether the chunk vectors have unit length (the model normalizes, or normalize_embeddings was set)."""

    @property
    def document_embedding(self) -> np.ndarray:
        """One vector for the whole text: the chunks' vectors averaged, weighted by their tokens (unit length when
        the chunks are); zeros for a text with no tokens."""
        weights = self.token_counts.astype(np.float32)
        if not weights.sum():
            return np.zeros(self.embeddings.shape[1], dtype=np.float32)
        mean = (weights[:, None] * self.embeddings).sum(axis=0) / weights.sum()
        return l2_normalize(mean[None])[0] if self.normalized else mean.astype(np.float32)


def whole_encodings(model: SentenceTransformer, texts: Sequence[str]) -> list[Encoding]:
    """Each text's tokens, special tokens included, however long (no truncation): what late chunking runs, and
    what chunking a text costs."""
    return [windows[0] for windows in model.tokenizer_wrapper.windows(texts, None, 0)]


def _content(encoding: Encoding) -> np.ndarray:
    """Indices of the encoding's text tokens (not special tokens)."""
    return np.flatnonzero(np.asarray(encoding.special_tokens_mask) == 0)


def _span_offsets(encoding: Encoding, tokens: np.ndarray) -> tuple[int, int]:
    if not len(tokens):
        return (0, 0)
    offsets = encoding.offsets
    return (int(offsets[tokens[0]][0]), int(offsets[tokens[-1]][1]))


def _spans(n_content: int, span: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) ranges over a text's n_content tokens: `span` tokens each, consecutive ones sharing `overlap`,
    as tokenizers' windows with stride `overlap` cut them (the last one may be shorter)."""
    if n_content == 0:
        return [(0, 0)]
    ranges, start = [], 0
    while True:
        end = min(start + span, n_content)
        ranges.append((start, end))
        if end == n_content:
            return ranges
        start = end - overlap


def encode_chunks(
    model: SentenceTransformer,
    inputs: str | Sequence[str],
    chunk_size: int | None = None,
    overlap: int = 0,
    late_chunking: bool = False,
    batch_size: int = 32,
    normalize_embeddings: bool = False,
) -> ChunkedText | list[ChunkedText]:
    """Embed texts longer than the model chunk by chunk instead of cutting them at max_seq_length (the method
    `SentenceTransformer.encode_chunks`): for each text a `ChunkedText` with one vector per chunk (`embeddings`),
    each chunk's character span (`offsets`) and a token-weighted `document_embedding` (one text: one ChunkedText,
    a list: a list).

    `chunk_size` is the tokens per chunk, special tokens included (default max_seq_length), consecutive chunks
    sharing `overlap` tokens. By default each chunk is embedded on its own; `late_chunking=True` runs each text
    whole once (it must fit the model's positions) and pools the token embeddings of each chunk's span (mean), so a
    chunk's vector carries the context of the whole text."""
    texts, single = as_text_list(inputs, "inputs")
    batch_size = check_batch_size(batch_size)
    wrapper = model.tokenizer_wrapper
    size = model.max_seq_length if chunk_size is None else check_int(chunk_size, "chunk_size")
    if size is None:
        raise ChunkingError("This model has no max_seq_length to chunk by; pass chunk_size (tokens per chunk).",
                            "chunk_size")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ChunkingError(f"overlap must be a non-negative integer of tokens, got {overlap!r}.", "overlap")
    wholes = whole_encodings(model, texts)
    specials = max((len(e.ids) - len(_content(e)) for e in wholes), default=0)
    span = size - specials
    if span < 1 or overlap >= span:
        raise ChunkingError(
            f"chunk_size={size} leaves {span} text tokens per chunk beside the {specials} special tokens; overlap "
            f"({overlap}) must be smaller than that.",
            "overlap" if span >= 1 else "chunk_size",
        )
    normalized = normalize_embeddings or model.config.has_normalize
    if late_chunking:
        chunks = _late(model, wholes, span, overlap, batch_size)
    else:
        chunks = _windows(model, wrapper.windows(texts, size, overlap), batch_size)
    results = []
    for embeddings, offsets, counts in chunks:
        if normalize_embeddings:
            embeddings = l2_normalize(embeddings)
        results.append(ChunkedText(embeddings.astype(np.float32), offsets, counts, normalized))
    return results[0] if single else results


Chunks = tuple[np.ndarray, list[tuple[int, int]], np.ndarray]


def _windows(model: SentenceTransformer, per_text: list[list[Encoding]], batch_size: int) -> list[Chunks]:
    """Every text's windows embedded as inputs of their own, batched across texts by the model's plan."""
    flat = [window for windows in per_text for window in windows]
    vectors: np.ndarray | None = None
    for idx in model.plan(flat, batch_size):
        emb = model.forward(model.pad([flat[i] for i in idx]))
        if vectors is None:
            vectors = np.empty((len(flat), emb.shape[1]), dtype=np.float32)
        vectors[idx] = emb
    assert vectors is not None  # every text has at least one window
    out, start = [], 0
    for windows in per_text:
        contents = [_content(w) for w in windows]
        offsets = [_span_offsets(w, c) for w, c in zip(windows, contents)]
        counts = np.array([len(c) for c in contents], dtype=np.int64)
        out.append((vectors[start : start + len(windows)], offsets, counts))
        start += len(windows)
    return out


def _late(model: SentenceTransformer, wholes: list[Encoding], span: int, overlap: int, batch_size: int) -> list[Chunks]:
    """Each text run whole once; each chunk the mean of its span's token embeddings, then the modules after
    pooling."""
    if model.tokenizer_wrapper.drop_ids:  # its token positions move at padding; a static table has no context
        raise ChunkingError("Late chunking needs a model whose tokens see each other; for this static model, windows "
                            "(late_chunking=False) give the same vectors.", "late_chunking")  # fmt: skip
    limit = model.tokenizer_wrapper.limit
    for i, encoding in enumerate(wholes):
        if limit is not None and len(encoding.ids) > limit:
            raise ChunkingError(
                f"inputs[{i}] has {len(encoding.ids)} tokens, more than this model's {limit} positions: late chunking "
                "runs the whole text at once. Chunk it into windows (late_chunking=False), or use a model with "
                "longer positions.",
                f"inputs[{i}]",
            )
    out: list[Any] = [None] * len(wholes)
    for idx in model.plan(wholes, batch_size):
        batch = model.pad([wholes[i] for i in idx])
        hidden = model.forward_tokens(batch)
        # the padded row holds the text's tokens at their encoding positions shifted by the left padding
        shift: Any = batch.input_ids.shape[1] - batch.lengths if model.tokenizer_wrapper.padding_side == "left" else 0
        for row, i in enumerate(idx):
            content = _content(wholes[i])
            ranges = _spans(len(content), span, overlap)
            masks = np.zeros((len(ranges), hidden.shape[1]), dtype=np.float32)
            for k, (start, end) in enumerate(ranges):
                masks[k, content[start:end] + (shift[row] if np.ndim(shift) else 0)] = 1.0
            counts = masks.sum(axis=1)
            pooled = (masks @ hidden[row]) / np.maximum(counts, 1.0)[:, None]
            offsets = [_span_offsets(wholes[i], content[s:e]) for s, e in ranges]
            out[i] = (model.embed_pooled(pooled), offsets, counts.astype(np.int64))
    return out

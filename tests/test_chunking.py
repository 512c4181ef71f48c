"""encode_chunks: texts past max_seq_length as token windows with overlap (each chunk embedded on its own) or late
chunking (the whole text run once, token embeddings pooled per chunk span), with character offsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny import WORDS

LONG = " ".join(WORDS[i % len(WORDS)] for i in range(37))  # 37 tokens; the tiny model's max_seq_length is 12
SHORT = "the cat sat"


@pytest.fixture
def model(tiny_model: Path):
    import lightembed

    return lightembed.SentenceTransformer(tiny_model)


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_windows_cover_the_text_with_overlap(model) -> None:
    result = model.encode_chunks(LONG, overlap=3)
    span = model.max_seq_length - 2  # [CLS] and [SEP] in every window
    words = LONG.split()
    assert list(result.token_counts[:-1]) == [span] * (len(result.token_counts) - 1)
    starts = [len(" ".join(words[:k])) + (1 if k else 0) for k in range(0, len(words), span - 3)]
    assert [start for start, _ in result.offsets] == starts[: len(result.offsets)]
    assert result.offsets[-1][1] == len(LONG)
    # each chunk is embedded as the model embeds the chunk's own text (whole words here, so the tokens match)
    by_hand = model.encode([LONG[s:e] for s, e in result.offsets])
    np.testing.assert_allclose(result.embeddings, by_hand, atol=1e-6)
    # consecutive chunks share 3 tokens: the next chunk starts 3 words before the previous one ends
    first_end_words = LONG[: result.offsets[0][1]].split()
    assert LONG[result.offsets[1][0] :].split()[:3] == first_end_words[-3:]


def _write_context_graph(path: Path) -> None:
    """A tiny graph in which every token sees the whole input: h_i = (E[id_i] + sum_j E[id_j]) * mask_i."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.tiny import HIDDEN, save_graph, weights

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
              for name in ("input_ids", "attention_mask")]  # fmt: skip
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["word"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["word", "mask3"], ["real"]),
        helper.make_node("ReduceSum", ["real", "seq"], ["context"], keepdims=1),
        helper.make_node("Add", ["word", "context"], ["seen"]),
        helper.make_node("Mul", ["seen", "mask3"], ["last_hidden_state"]),
    ]
    inits = [numpy_helper.from_array(weights(0)[0], "E"), numpy_helper.from_array(np.array([-1]), "last"),
             numpy_helper.from_array(np.array([1]), "seq")]  # fmt: skip
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])
    save_graph(path, "context", nodes, inputs, [out], inits)


@pytest.fixture
def context_model(tiny_model: Path):
    import lightembed

    _write_context_graph(tiny_model / "onnx" / "model.onnx")
    return lightembed.SentenceTransformer(tiny_model)


def test_late_chunking_pools_the_whole_texts_token_embeddings(context_model) -> None:
    model = context_model
    result = model.encode_chunks([LONG, SHORT], chunk_size=8, overlap=2, late_chunking=True)
    windows = model.encode_chunks(LONG, chunk_size=8, overlap=2)
    assert np.abs(result[0].embeddings - windows.embeddings).max() > 0.01  # the chunks carry the whole text
    model.max_seq_length = 64  # the tiny model's positions: the whole text in one pass, as late chunking runs it
    for text, chunked in zip([LONG, SHORT], result):
        tokens = model.encode(text, output_value="token_embeddings")[1:-1]  # without [CLS] and [SEP]
        spans, start = [], 0
        while True:
            spans.append((start, min(start + 6, len(tokens))))
            if spans[-1][1] == len(tokens):
                break
            start = spans[-1][1] - 2
        by_hand = _l2(np.stack([tokens[s:e].mean(axis=0) for s, e in spans]))  # the model's Normalize
        np.testing.assert_allclose(chunked.embeddings, by_hand, atol=1e-6)
        assert list(chunked.token_counts) == [e - s for s, e in spans]
    assert result[1].offsets == [(0, len(SHORT))]


def test_document_embedding_is_the_token_weighted_mean(model) -> None:
    chunked = model.encode_chunks(LONG)
    weights = chunked.token_counts[:, None].astype(np.float64)
    expected = _l2((chunked.embeddings * weights).sum(axis=0) / weights.sum())
    np.testing.assert_allclose(chunked.document_embedding, expected, atol=1e-6)
    assert chunked.normalized and len(chunked.embeddings) > 1
    empty = model.encode_chunks("")
    assert empty.offsets == [(0, 0)] and not np.any(empty.document_embedding)


def test_chunking_refusals(model) -> None:
    with pytest.raises(ValueError, match="overlap"):
        model.encode_chunks(LONG, chunk_size=6, overlap=4)
    with pytest.raises(ValueError, match="overlap must be a non-negative"):
        model.encode_chunks(LONG, overlap=-1)
    with pytest.raises(ValueError, match="more than this model's 64 positions"):
        model.encode_chunks(" ".join([LONG] * 3), late_chunking=True)

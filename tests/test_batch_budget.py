"""max_batch_tokens as encode()/predict() apply it: what reaches the graph stays under the cap (rows x padded
length), for all three model classes, and the results are those of uncapped batches."""

from __future__ import annotations

import numpy as np
import pytest

from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
from tests.graph_recorder import record
from tests.test_cross_encoder import make_ce
from tests.test_sparse_encoder import make_splade
from tests.tiny import make_model

CAP = 24
TEXTS = [" ".join(["cat"] * n) for n in (1, 9, 2, 10, 3, 8, 4, 7)] * 3  # 3 to 12 tokens each


def check_calls(calls, n_inputs: int) -> None:
    """Every run under the cap (a single longer input may run alone); several rows per run where they fit."""
    assert sum(c.rows for c in calls) == n_inputs
    assert all(c.rows * c.seq <= CAP or c.rows == 1 for c in calls), calls
    assert max(c.rows for c in calls) > 1  # the cap packs short inputs together, not one at a time
    assert len(calls) > 2


def test_sentence_transformer_encode_keeps_every_batch_under_the_cap(tmp_path):
    folder = make_model(tmp_path / "m")
    unbounded = SentenceTransformer(folder, max_batch_tokens=None)
    calls = record(unbounded).calls
    expected = unbounded.encode(TEXTS, batch_size=16)
    assert max(c.rows * c.seq for c in calls) > CAP  # without the cap the same call runs bigger batches

    model = SentenceTransformer(folder, max_batch_tokens=CAP)
    calls = record(model).calls
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=16), expected, rtol=1e-6, atol=1e-7)
    check_calls(calls, len(TEXTS))
    calls.clear()
    tokens = model.encode(TEXTS, batch_size=16, output_value="token_embeddings")
    assert [t.shape[0] for t in tokens] == [len(t.split()) + 2 for t in TEXTS]
    check_calls(calls, len(TEXTS))


def test_default_cap_and_bad_caps(tiny_model):
    assert SentenceTransformer(tiny_model).max_batch_tokens == 2048
    assert SentenceTransformer(tiny_model, max_batch_tokens=None).max_batch_tokens is None
    for bad in (0, -5, 2.5, "many"):
        with pytest.raises((ValueError, TypeError), match="max_batch_tokens"):
            SentenceTransformer(tiny_model, max_batch_tokens=bad)


def test_cross_encoder_predict_keeps_every_batch_under_the_cap(tmp_path):
    folder = make_ce(tmp_path / "ce", 3)
    pairs = [(text, "dog") for text in TEXTS]  # 5 to 14 tokens per pair
    expected = CrossEncoder(folder, max_batch_tokens=None).predict(pairs, batch_size=16)
    model = CrossEncoder(folder, max_batch_tokens=CAP)
    calls = record(model).calls
    np.testing.assert_allclose(model.predict(pairs, batch_size=16), expected, rtol=1e-6, atol=1e-6)
    check_calls(calls, len(pairs))
    assert model.max_batch_tokens == CAP and CrossEncoder(folder).max_batch_tokens == 2048


def test_sparse_encoder_encode_keeps_every_batch_under_the_cap(tmp_path):
    folder = make_splade(tmp_path / "splade")
    expected = SparseEncoder(folder, max_batch_tokens=None).encode(TEXTS, batch_size=16).toarray()
    model = SparseEncoder(folder, max_batch_tokens=CAP)
    calls = record(model).calls
    np.testing.assert_array_equal(model.encode(TEXTS, batch_size=16).toarray(), expected)
    check_calls(calls, len(TEXTS))
    assert SparseEncoder(folder).max_batch_tokens == 2048

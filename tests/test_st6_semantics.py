"""sentence-transformers 6 behaviour where it differs from 5.x, and its new small names, on tiny models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import lightembed
from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder, util
from lightembed.unsupported import NotSupportedError
from tests.test_cross_encoder import make_ce
from tests.test_sparse_encoder import make_splade
from tests.tiny import make_model

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "hello world", "red blue green"]
DOCS = ["the cat sat", "a dog ran", "hello world"]


def test_rank_ignores_apply_softmax_with_a_warning_and_gives_python_floats(tmp_path: Path) -> None:
    ce = CrossEncoder(str(make_ce(tmp_path / "ce")))
    plain = ce.rank("the cat", DOCS)
    with pytest.warns(UserWarning, match="apply_softmax.*no effect"):
        soft = ce.rank("the cat", DOCS, apply_softmax=True)
    assert soft == plain and len({r["score"] for r in soft}) == 3  # not every score 1.0 (5.x's result)
    assert all(type(r["score"]) is float for r in plain)
    json.dumps(plain)  # numpy float32 scores made this fail
    np.testing.assert_allclose(ce.predict([("the cat", d) for d in DOCS], apply_softmax=True),
                               ce.predict([("the cat", d) for d in DOCS]))  # fmt: skip


def test_keep_in_fp32_modules_accepts_none_and_refuses_names(tmp_path: Path) -> None:
    folder = make_ce(tmp_path / "ce")
    ce = CrossEncoder(str(folder), keep_in_fp32_modules=[])
    assert ce.keep_in_fp32_modules == [] and ce.set_keep_in_fp32_modules([]) is None
    with pytest.raises(ValueError, match="torch backend"):
        ce.set_keep_in_fp32_modules(["classifier"])
    with pytest.raises(ValueError, match="torch backend"):
        CrossEncoder(str(folder), keep_in_fp32_modules=["classifier"])
    with pytest.raises(ValueError, match="list"):
        ce.set_keep_in_fp32_modules("classifier")


def test_int8_of_one_embedding_raises_as_6_2(tmp_path: Path) -> None:
    model = SentenceTransformer(str(make_model(tmp_path / "st")))
    with pytest.raises(ValueError, match="single embedding"):
        model.encode("hello world", precision="int8")
    assert model.encode(TEXTS, precision="int8").dtype == np.int8
    emb = model.encode(TEXTS)
    ranges = np.vstack([emb.min(0), emb.max(0)])
    assert model.encode("hello world").shape == (8,)
    assert util.quantize_embeddings(emb[:1], "int8", ranges=ranges).shape == (1, 8)


def test_new_small_names(tmp_path: Path) -> None:
    models = [
        SentenceTransformer(str(make_model(tmp_path / "st"))),
        CrossEncoder(str(make_ce(tmp_path / "ce"))),
        SparseEncoder(str(make_splade(tmp_path / "sp"))),
    ]
    for model in models:
        assert model.backend == "onnx" == model.get_backend()
        assert model.clear_placement_cache() is None
        with pytest.raises(NotSupportedError, match=r"merge\(\) is not supported.*mergekit"):
            type(model).merge([model, model])
    st, _, sp = models
    assert st.SUPPORTED_SIMILARITY_FN_NAMES == sp.SUPPORTED_SIMILARITY_FN_NAMES == (
        "cosine", "dot", "euclidean", "manhattan",
    )  # fmt: skip
    assert lightembed.SimilarityFunction is util.SimilarityFunction
    st.similarity_fn_name = lightembed.SimilarityFunction.DOT
    assert st.similarity_fn_name == "dot"
    assert util.similarity_fct_name(st.similarity) == "dot_score"
    assert util.similarity_fct_name(st.similarity_pairwise) == "pairwise_dot_score"


def test_encode_takes_task_and_processing_kwargs_and_query_positionally(tmp_path: Path) -> None:
    model = SentenceTransformer(str(make_model(tmp_path / "st", prompts={"query": "query ", "doc": "passage "})))
    np.testing.assert_array_equal(model.encode(TEXTS, task="query"), model.encode(TEXTS))
    np.testing.assert_array_equal(model.encode(TEXTS, processing_kwargs={}), model.encode(TEXTS))
    with pytest.raises(ValueError, match="processing_kwargs"):
        model.encode(TEXTS, processing_kwargs={"text": {"max_length": 3}})
    # encode_query(x, "doc"): the second positional argument is prompt_name, as in 6.x
    np.testing.assert_array_equal(model.encode_query(TEXTS, "doc"), model.encode(TEXTS, prompt_name="doc"))
    np.testing.assert_array_equal(model.encode_document(TEXTS, "query"), model.encode(TEXTS, prompt_name="query"))
    assert not np.allclose(model.encode_query(TEXTS), model.encode_query(TEXTS, "doc"))
    sp = SparseEncoder(str(make_splade(tmp_path / "sp")))
    sp.encode(TEXTS, task="document")
    with pytest.raises(ValueError, match="processing_kwargs"):
        sp.encode(TEXTS, processing_kwargs={"text": {"max_length": 3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(TEXTS, task=None)

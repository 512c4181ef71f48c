"""lightembed.MultiVectorEncoder and util.maxsim* against sentence-transformers 6.2 on torch: tiny seeded
multi-vector models that 6.2 builds and saves (tests/st6.py), their per-token vectors and MaxSim scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lightembed import MultiVectorEncoder, util
from lightembed.multi_vector import HierarchicalTokenPooling
from lightembed.unsupported import NotSupportedError
from tests.st6 import DOCUMENTS, QUERIES, TEXTS
from tests.st6_venv import build
from tests.test_st6 import min_cos

CASES = ("multi_vector", "multi_vector_min")


@pytest.fixture(scope="module")
def st6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("mv"), *CASES, "maxsim_scores")


@pytest.mark.parametrize("case", CASES)
def test_per_token_vectors_and_maxsim_match_6_2(st6: Path, case: str) -> None:
    refs = np.load(st6 / case / "reference.npz")
    model = MultiVectorEncoder(str(st6 / case))
    queries, documents, plain = model.encode_query(QUERIES), model.encode_document(DOCUMENTS), model.encode(TEXTS)
    for got, name in ((queries, "query"), (documents, "document"), (plain, "plain")):
        assert [len(x) for x in got] == refs[f"{name}_lengths"].tolist(), name  # which tokens were kept
        key = {"query": "queries", "document": "documents"}.get(name, name)
        print(f"PARITY mve {case} {name}: min_cos={min_cos(np.concatenate(got), refs[key]):.7f}")
        assert min_cos(np.concatenate(got), refs[key]) >= 0.99999
    scores = model.similarity(queries, documents)
    assert scores.shape == (len(QUERIES), len(DOCUMENTS)) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, refs["scores"], rtol=1e-4)
    np.testing.assert_allclose(model.similarity_pairwise(queries, documents[: len(queries)]), refs["pairwise"], rtol=1e-4)
    assert model.encode_query(QUERIES[0]).shape == queries[0].shape  # one text: one array


def test_query_and_document_settings_come_from_the_folder(st6: Path) -> None:
    model = MultiVectorEncoder(str(st6 / "multi_vector"))
    assert (model.query_length, model.document_length) == (10, 12)
    assert model.query_expansion == {"strategy": "fixed", "attend": False, "token": None, "length": 10}
    assert model.prompts["query"] == "query " and model.similarity_fn_name == "maxsim"
    assert model.get_embedding_dimension() == 16
    assert all(len(q) == 10 for q in model.encode_query(QUERIES))  # fixed expansion: every query is 10 vectors
    raw = model.encode_query(QUERIES, output_value=None)
    assert raw[1]["query_expansion_positions"].sum() > 0 and raw[1]["token_embeddings"].shape[-1] == 16
    # the skiplist drops punctuation from documents only
    comma = model.tokenizer.token_to_id(",")
    docs = model.encode_document(["a dog ran in the park, quick!"], output_value=None)[0]
    assert not docs["attention_mask"][docs["input_ids"] == comma].any()
    assert model.encode(["hello , world"], task="query", output_value=None)[0]["attention_mask"][2]
    mean = MultiVectorEncoder(str(st6 / "multi_vector_min"))
    assert mean.similarity_fn_name == "meanmaxsim" and mean.modules.token_pooling.pool_factor == 2


def test_output_precision_and_its_scores(st6: Path) -> None:
    model = MultiVectorEncoder(str(st6 / "multi_vector"))
    q, d = model.encode_query(QUERIES), model.encode_document(DOCUMENTS)
    half = model.encode_document(DOCUMENTS, precision="float16")
    assert half[0].dtype == np.float16 and half[0].nbytes * 2 == d[0].nbytes
    np.testing.assert_allclose(model.similarity(q, half), model.similarity(q, d), rtol=2e-3)
    q8, d8 = model.encode_query(QUERIES, precision="int8"), model.encode_document(DOCUMENTS, precision="int8")
    assert d8[0].dtype == np.int8 and d8[0].nbytes * 4 == d[0].nbytes
    np.testing.assert_allclose(model.similarity(q8, d8) / 127**2, model.similarity(q, d), atol=0.05)
    assert (np.argsort(-model.similarity(q8, d8), 1) == np.argsort(-model.similarity(q, d), 1))[:, 0].all()
    with pytest.raises(ValueError, match="precision"):
        model.encode("hello", precision="binary")


def test_encode_options_and_refusals(st6: Path, tmp_path: Path) -> None:
    model = MultiVectorEncoder(str(st6 / "multi_vector"))
    unit = model.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit[0], axis=1), 1, rtol=1e-5)
    short = model.encode_document(DOCUMENTS, processing_kwargs={"text": {"max_length": 4}})
    assert max(len(x) for x in short) <= 4
    with pytest.raises(ValueError, match="processing_kwargs"):
        model.encode("hi", processing_kwargs={"text": {"padding_side": "left"}})
    with pytest.raises(ValueError, match="convert_to_tensor"):
        model.encode("hi", convert_to_tensor=True)
    with pytest.raises(NotSupportedError, match="pool"):
        model.encode(["hi"], device=["cpu", "cpu"])
    with pytest.raises(ValueError, match="only supports"):
        model.similarity_fn_name = "cosine"
    model.similarity_fn_name = util.SimilarityFunction.MEAN_MAXSIM
    q, d = model.encode_query(QUERIES), model.encode_document(DOCUMENTS)
    np.testing.assert_allclose(model.similarity(q, d), util.maxsim(q, d) / 10, rtol=1e-6)
    pooled = model.encode_document(DOCUMENTS, token_pooling=HierarchicalTokenPooling(pool_factor=2))
    assert [len(x) for x in pooled] == [1 + (len(x) - 1) // 2 for x in d]
    legacy = tmp_path / "pylate"
    shutil.copytree(st6 / "multi_vector", legacy)
    config = json.loads((legacy / "config_sentence_transformers.json").read_text())
    (legacy / "config_sentence_transformers.json").write_text(json.dumps({**config, "query_prefix": "[Q] "}))
    with pytest.raises(ValueError, match="PyLate"):
        MultiVectorEncoder(str(legacy))


def test_maxsim_family_matches_6_2(st6: Path) -> None:
    r = np.load(st6 / "maxsim_scores" / "reference.npz")
    q = [r[f"query{i}"] for i in range(3)]
    d = [r[f"document{i}"] for i in range(4)]
    a_mask = [r[f"a_mask{i}"] for i in range(3)]
    got = {
        "maxsim": util.maxsim(q, d),
        "mean_maxsim": util.mean_maxsim(q, d),
        "padded_maxsim": util.maxsim(q, r["padded"]),
        "masked_maxsim": util.maxsim(q, r["padded"], a_mask=a_mask, b_mask=r["b_mask"]),
        "chunked": util.maxsim(q, d, chunk_elements=10),
        "single": util.maxsim(q[0], d[2]),
        "pairwise": util.maxsim_pairwise(q, d[:3]),
        "mean_pairwise": util.mean_maxsim_pairwise(q, [d[0], d[2], d[3]]),
        "int8": util.maxsim([r[f"q8_{i}"] for i in range(3)], d),
    }
    for name, scores in got.items():
        np.testing.assert_allclose(scores, r[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert (got["maxsim"][:, 1] == -1e9).all()  # the empty document ranks last
    with pytest.raises(ValueError, match="same number"):
        util.maxsim_pairwise(q, d)
    assert util.SimilarityFunction.to_similarity_fn("meanmaxsim") is util.mean_maxsim
    assert util.SimilarityFunction.to_similarity_pairwise_fn(util.SimilarityFunction.MAXSIM) is util.maxsim_pairwise


def test_scoring_mask_rules() -> None:
    from lightembed.multi_vector import ScoringMask

    vocab = {"[UNK]": 1, ",": 7, "[IMG]": 9}
    mask = ScoringMask.from_config(
        {"skiplist_words": [",", "nope"], "skiplist_tasks": "query", "keep_only_token_ids": [9]}, vocab.get, "[UNK]"
    )
    assert mask.skiplist_ids.tolist() == [7] and mask.skiplist_tasks == ("query",)  # "nope" is not one token
    ids = np.array([[2, 7, 9, 9, 0, 0]])
    attention = np.array([[1, 1, 1, 1, 0, 0]])
    expansion = np.array([[False, False, False, False, True, False]])
    assert mask(ids, attention, "query", expansion).tolist() == [[True, False, True, True, True, False]]
    assert mask(ids, attention, "document", expansion).tolist() == [[False, False, True, True, False, False]]
    assert mask(ids, attention, None, None).tolist() == mask(ids, attention, "document", None).tolist()


def test_a_dense_saved_without_io_names_projects_token_embeddings(st6: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old_dense"
    shutil.copytree(st6 / "multi_vector", folder)
    config_path = folder / "1_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("module_input_name", "module_output_name"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "pylate.models.Dense.Dense"  # 6.2 reads PyLate's Dense as its own
    (folder / "modules.json").write_text(json.dumps(modules))
    refs = np.load(st6 / "multi_vector" / "reference.npz")
    assert min_cos(np.concatenate(MultiVectorEncoder(str(folder)).encode_document(DOCUMENTS)), refs["documents"]) >= 0.99999


def test_save_writes_a_folder_that_loads_the_same(st6: Path, tmp_path: Path) -> None:
    model = MultiVectorEncoder(str(st6 / "multi_vector_min"))
    model.similarity_fn_name = "maxsim"
    model.save(tmp_path / "saved")
    again = MultiVectorEncoder(str(tmp_path / "saved"))
    assert again.similarity_fn_name == "maxsim" and again.query_expansion == model.query_expansion
    for a, b in zip(again.encode_document(DOCUMENTS), model.encode_document(DOCUMENTS)):
        np.testing.assert_array_equal(a, b)
    assert again.runtime_info.verified  # lightembed.json lists the file

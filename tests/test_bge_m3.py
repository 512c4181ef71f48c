"""BGE-M3 on the runtime: BGEM3Model's three outputs from one graph, compute_score, and the same folder as a
SentenceTransformer, SparseEncoder and MultiVectorEncoder, and behind `lightembed serve`.

The folder is tests/tiny.py's graph (hidden = E[ids] + T[0], masked) with the exporter's BGE-M3 heads appended
(lightembed_export.bge_m3.add_heads) from seeded NumPy weights, so every expected value is computed here in NumPy by
FlagEmbedding's formulas, independently of lightembed. tests/test_family_matrix.py has the export of a torch
checkpoint against FlagEmbedding's formulas on torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lightembed
from lightembed.errors import LightembedTypeError, LightembedValueError
from tests.tiny import HIDDEN, VOCAB, make_model, token_embeddings, token_ids

pytest.importorskip("onnx")
from lightembed_export.bge_m3 import Heads, add_heads  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog", "hello world hello world red blue green fast slow big small",
         "query", "", "zebra unknown words cat"]  # fmt: skip
MAX = 12
COLBERT_DIM = 6
UNUSED = {VOCAB[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]")}


def _heads(seed: int = 3) -> Heads:
    rng = np.random.default_rng(seed)
    return Heads(
        rng.standard_normal((1, HIDDEN)).astype(np.float32) * 0.5,
        np.array([0.1], dtype=np.float32),
        rng.standard_normal((COLBERT_DIM, HIDDEN)).astype(np.float32),
        rng.standard_normal(COLBERT_DIM).astype(np.float32),
    )


def make_bge_m3(folder: Path) -> Path:
    """A tiny BGE-M3 export: CLS pooling + Normalize, the heads in onnx/model.onnx."""
    import onnx

    make_model(folder, pooling={"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": True,
                                "pooling_mode_mean_tokens": False}, max_seq_length=MAX)  # fmt: skip
    config = {"pad_token": "[PAD]", "cls_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    path = folder / "onnx" / "model.onnx"
    model = onnx.load(str(path))
    assert add_heads(model, _heads())
    assert not add_heads(model, _heads())  # once only
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return folder


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def expected(text: str) -> tuple[np.ndarray, dict[str, float], np.ndarray]:
    """FlagEmbedding's (dense, lexical weights, colbert vectors) of one text, in NumPy."""
    heads = _heads()
    hidden, ids = token_embeddings(text, MAX), token_ids(text, MAX)
    weights = np.maximum(hidden @ heads.sparse_weight.T + heads.sparse_bias, 0)[:, 0]
    lexical: dict[str, float] = {}
    for token, w in zip(ids, weights):
        if token not in UNUSED and w > 0 and w > lexical.get(str(token), 0.0):
            lexical[str(token)] = float(w)
    colbert = _normalize(hidden[1:] @ heads.colbert_weight.T + heads.colbert_bias)
    return _normalize(hidden[0]), lexical, colbert


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_bge_m3(tmp_path_factory.mktemp("bge_m3") / "m3")


@pytest.fixture(scope="module")
def model(folder: Path) -> lightembed.BGEM3Model:
    return lightembed.BGEM3Model(str(folder), max_batch_tokens=None)


def test_encode_gives_the_three_outputs_of_flag_embedding(model) -> None:
    got = model.encode(TEXTS, batch_size=4, max_length=MAX, return_dense=True, return_sparse=True,
                       return_colbert_vecs=True)  # fmt: skip
    assert set(got) == {"dense_vecs", "lexical_weights", "colbert_vecs"}
    assert got["dense_vecs"].shape == (len(TEXTS), HIDDEN)
    for i, text in enumerate(TEXTS):
        dense, lexical, colbert = expected(text)
        np.testing.assert_allclose(got["dense_vecs"][i], dense, atol=1e-5)
        assert set(got["lexical_weights"][i]) == set(lexical), text
        for key, weight in lexical.items():
            assert abs(got["lexical_weights"][i][key] - weight) < 1e-5
        assert got["colbert_vecs"][i].shape == colbert.shape == (len(token_ids(text, MAX)) - 1, COLBERT_DIM)
        np.testing.assert_allclose(got["colbert_vecs"][i], colbert, atol=1e-5)
    assert all(int(k) not in UNUSED for row in got["lexical_weights"] for k in row)
    assert got["lexical_weights"][4] == {}  # "": [CLS] [SEP] only
    # the seeded head gives some tokens no weight (relu), so the test sees tokens dropped as well as kept
    assert any(len(r) < len(set(token_ids(t, MAX)) - UNUSED) for r, t in zip(got["lexical_weights"], TEXTS))


def test_encode_defaults_single_text_and_truncation(model, folder) -> None:
    got = model.encode(TEXTS[:2])  # FlagEmbedding's default: dense only
    assert got["lexical_weights"] is None and got["colbert_vecs"] is None and got["dense_vecs"].shape == (2, HIDDEN)
    one = model.encode("a dog", return_sparse=True, return_colbert_vecs=True)
    assert one["dense_vecs"].shape == (HIDDEN,) and isinstance(one["lexical_weights"], dict)
    assert one["colbert_vecs"].shape == (3, COLBERT_DIM)  # a dog [SEP]
    short = model.encode(TEXTS[2], max_length=4, return_colbert_vecs=True)["colbert_vecs"]
    assert short.shape == (3, COLBERT_DIM)  # [CLS] hello world [SEP]: three after the CLS
    flags = lightembed.BGEM3Model(str(folder), return_sparse=True, return_dense=False).encode(["a dog"])
    assert flags["dense_vecs"] is None and flags["lexical_weights"][0] == pytest.approx(expected("a dog")[1])


def test_compute_score_is_flag_embeddings_hybrid(model) -> None:
    pairs = [(TEXTS[i], TEXTS[j]) for i in range(len(TEXTS)) for j in (0, 2)]
    weights = [0.4, 0.2, 0.4]
    scores = model.compute_score(pairs, batch_size=3, max_query_length=MAX, max_passage_length=MAX,
                                 weights_for_different_modes=weights)
    assert set(scores) == {"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}
    for n, (query, passage) in enumerate(pairs):
        qd, ql, qc = expected(query)
        pd, pl, pc = expected(passage)
        dense = float(qd @ pd)
        sparse = sum(w * pl[t] for t, w in ql.items() if t in pl)
        colbert = float((qc @ pc.T).max(1).mean())
        want = [colbert, sparse, dense, (0.2 * sparse + 0.4 * dense) / 0.6, 0.4 * dense + 0.2 * sparse + 0.4 * colbert]
        got = [scores[k][n] for k in ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense")]
        np.testing.assert_allclose(got, want, atol=1e-5)
    one = model.compute_score(pairs[0])
    assert isinstance(one["dense"], float)
    assert one["colbert+sparse+dense"] == pytest.approx((one["dense"] + one["sparse"] + one["colbert"]) / 3)
    lw = model.encode(TEXTS[:2], return_sparse=True)["lexical_weights"]
    assert model.compute_lexical_matching_score(lw[0], lw[0]) == pytest.approx(sum(w * w for w in lw[0].values()))
    assert model.compute_lexical_matching_score(lw, lw).shape == (2, 2)
    assert model.convert_id_to_token(lw[0]).keys() <= set(TEXTS[0].split())


def test_bad_calls_name_the_problem(model, folder, tmp_path) -> None:
    with pytest.raises(LightembedTypeError, match="sentence_pairs must be"):
        model.compute_score("ab")  # a string is not a pair of one-letter texts
    with pytest.raises(LightembedValueError, match="max_length"):
        model.encode("a dog", max_length=0)
    assert model.compute_score([])["dense"] == [] and model.encode([], return_sparse=True)["lexical_weights"] == []
    with pytest.raises(LightembedTypeError, match=r"sentence_pairs\[1\]"):
        model.compute_score([("a", "b"), ("a",)])
    with pytest.raises(LightembedValueError, match="weights_for_different_modes"):
        model.compute_score([("a", "b")], weights_for_different_modes=[1.0, 1.0])
    with pytest.raises(LightembedValueError, match="normalize_embeddings"):
        lightembed.BGEM3Model(str(folder), normalize_embeddings=False)
    with pytest.raises(LightembedTypeError, match="unexpected"):
        lightembed.BGEM3Model(str(folder), colbert_dim=8)
    with pytest.raises(lightembed.NotSupportedError, match="start_multi_process_pool"):
        model.start_multi_process_pool()
    plain = make_model(tmp_path / "plain")
    with pytest.raises(LightembedValueError, match="no BGE-M3 outputs"):
        lightembed.BGEM3Model(str(plain))


def test_the_other_classes_read_their_head(folder, model) -> None:
    m3 = model.encode(TEXTS, max_length=MAX, return_sparse=True, return_colbert_vecs=True)
    st = lightembed.SentenceTransformer(str(folder)).encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(st, m3["dense_vecs"], atol=1e-5)  # Pooling(cls) + Normalize on last_hidden_state
    sparse = lightembed.SparseEncoder(str(folder))
    assert sparse.get_embedding_dimension() == len(VOCAB)  # the vocabulary, not the graph's hidden width
    rows = sparse.encode(TEXTS, batch_size=4, convert_to_sparse_tensor=False)
    for i, lexical in enumerate(m3["lexical_weights"]):
        want = np.zeros(rows.shape[1], dtype=np.float32)
        for key, weight in lexical.items():
            want[int(key)] = weight
        np.testing.assert_allclose(rows[i], want, atol=1e-6)
    top = sparse.encode(TEXTS[2], max_active_dims=2)
    assert len(top.indices) == 2
    np.testing.assert_allclose(sparse.similarity(rows[:3], rows[:3]),
                               model.compute_lexical_matching_score(m3["lexical_weights"][:3], m3["lexical_weights"][:3]),
                               atol=1e-5)  # fmt: skip
    colbert = lightembed.MultiVectorEncoder(str(folder))
    multi = colbert.encode(TEXTS, batch_size=4)
    assert [m.shape for m in multi] == [c.shape for c in m3["colbert_vecs"]]
    for got, want in zip(multi, m3["colbert_vecs"]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert colbert.similarity_fn_name == "meanmaxsim"  # FlagEmbedding's colbert_score: MaxSim / query vectors
    scores = colbert.similarity(multi[:3], multi[:3])
    want = [[model.colbert_score(q, d) for d in m3["colbert_vecs"][:3]] for q in m3["colbert_vecs"][:3]]
    np.testing.assert_allclose(scores, want, atol=1e-5)


def test_the_servers_sparse_face_shares_the_graph(folder, tmp_path) -> None:
    from lightembed.bge_m3 import sparse_encoder_of

    st = lightembed.SentenceTransformer(str(folder))
    sparse = sparse_encoder_of(st)
    assert sparse is not None and sparse._graph is st._graph
    assert sparse.encode("a dog", convert_to_sparse_tensor=False).shape == (len(VOCAB),)
    assert sparse_encoder_of(lightembed.SentenceTransformer(str(make_model(tmp_path / "plain")))) is None


def test_server_serves_embed_and_embed_sparse_from_one_folder(folder, model) -> None:
    from tests.test_server import KEY, Server, http

    server = Server([f"{folder}=m3", "--api-key", KEY])
    try:
        status, _, dense = http("POST", server.url + "/embed", {"inputs": TEXTS[:3]}, KEY)
        assert status == 200, dense
        np.testing.assert_allclose(np.array(dense), model.encode(TEXTS[:3], max_length=MAX)["dense_vecs"], atol=1e-5)
        status, _, sparse = http("POST", server.url + "/embed_sparse", {"inputs": TEXTS[:3], "model": "m3"}, KEY)
        assert status == 200, sparse
        want = model.encode(TEXTS[:3], max_length=MAX, return_dense=False, return_sparse=True)["lexical_weights"]
        for row, lexical in zip(sparse, want):
            assert {str(e["index"]): e["value"] for e in row} == pytest.approx(lexical)
    finally:
        server.stop()


def test_openvino_backend_gives_the_three_outputs(folder, model) -> None:
    """Graph.run on OpenVINO: the three outputs of one inference request, as onnxruntime's."""
    pytest.importorskip("openvino")
    ours = lightembed.BGEM3Model(str(folder), backend="openvino",
                                 model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}})  # fmt: skip
    assert "OpenVINO" in ours.runtime_info.providers[0] and "f32" in ours.runtime_info.providers[0]
    flags = dict(max_length=MAX, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    got, want = ours.encode(TEXTS, batch_size=4, **flags), model.encode(TEXTS, batch_size=4, **flags)
    np.testing.assert_allclose(got["dense_vecs"], want["dense_vecs"], atol=1e-5)
    for a, b in zip(got["lexical_weights"], want["lexical_weights"]):
        assert a == pytest.approx(b, abs=1e-5)
    for a, b in zip(got["colbert_vecs"], want["colbert_vecs"]):
        np.testing.assert_allclose(a, b, atol=1e-5)

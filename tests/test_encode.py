"""encode() and friends on tiny models whose expected output is computed here in NumPy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.tiny import HIDDEN, VOCAB, make_model, token_embeddings, weights

TEXTS = ["the cat sat on the mat", "hello world", "", "a dog ran in the park fast", "big red dog"]


def expected_mean(text: str, max_len: int = 12, normalize: bool = True) -> np.ndarray:
    v = token_embeddings(text, max_len).mean(axis=0)
    return v / np.linalg.norm(v) if normalize else v


def test_list_gives_rows_in_input_order(tiny_model):
    model = SentenceTransformer(tiny_model, device="cpu")
    out = model.encode(TEXTS, batch_size=2)
    assert out.shape == (len(TEXTS), HIDDEN) and out.dtype == np.float32
    expected = np.stack([expected_mean(t) for t in TEXTS])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_single_string_gives_1d_and_empty_list_gives_0_rows(tiny_model):
    model = SentenceTransformer(tiny_model)
    single = model.encode("hello world")
    assert single.shape == (HIDDEN,)
    np.testing.assert_allclose(single, expected_mean("hello world"), rtol=1e-5, atol=1e-6)
    empty = model.encode([])
    assert empty.shape == (0, HIDDEN) and empty.dtype == np.float32
    assert model.encode([], precision="ubinary").shape == (0, HIDDEN // 8)


def test_sentences_keyword_and_tuple_and_array_inputs(tiny_model):
    model = SentenceTransformer(tiny_model)
    base = model.encode(TEXTS)
    np.testing.assert_array_equal(model.encode(sentences=TEXTS), base)
    np.testing.assert_array_equal(model.encode(tuple(TEXTS)), base)
    np.testing.assert_array_equal(model.encode(np.array(TEXTS)), base)


def test_batch_composition_does_not_change_a_row(tiny_model):
    model = SentenceTransformer(tiny_model)
    together = model.encode(TEXTS, batch_size=32)
    alone = np.stack([model.encode(t) for t in TEXTS])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-7)


def test_fixed_padding_in_tokenizer_json_is_overridden(tiny_model):
    model = SentenceTransformer(tiny_model)  # tokenizer.json pads to 16; max_seq_length is 12
    batch = model.tokenize(["hello world", "the cat"])
    assert batch["input_ids"].shape == (2, 4)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    long = model.tokenize(["the " * 40])
    assert long["input_ids"].shape == (1, 12)


def test_truncation_follows_max_seq_length_and_its_setter(tiny_model):
    model = SentenceTransformer(tiny_model)
    long_text = " ".join(["cat", "dog"] * 30)
    np.testing.assert_allclose(model.encode(long_text), expected_mean(long_text, 12), rtol=1e-5, atol=1e-6)
    model.max_seq_length = 5
    assert model.max_seq_length == 5
    np.testing.assert_allclose(model.encode(long_text), expected_mean(long_text, 5), rtol=1e-5, atol=1e-6)


def test_token_embeddings_are_unpadded_per_input(tiny_model):
    model = SentenceTransformer(tiny_model)
    out = model.encode(TEXTS, output_value="token_embeddings")
    assert isinstance(out, list) and len(out) == len(TEXTS)
    for text, arr in zip(TEXTS, out):
        np.testing.assert_allclose(arr, token_embeddings(text), rtol=1e-6, atol=1e-6)
    everything = model.encode(TEXTS, output_value=None)
    assert set(everything[0]) >= {"sentence_embedding", "token_embeddings", "input_ids", "attention_mask"}
    np.testing.assert_allclose(everything[1]["sentence_embedding"], expected_mean(TEXTS[1]), atol=1e-6)


def test_normalize_and_truncate_dim_order(tmp_path):
    model = SentenceTransformer(make_model(tmp_path / "m", normalize=False))
    raw = np.stack([expected_mean(t, normalize=False) for t in TEXTS])
    np.testing.assert_allclose(model.encode(TEXTS), raw, rtol=1e-5, atol=1e-6)
    cut = model.encode(TEXTS, truncate_dim=3, normalize_embeddings=True)
    want = raw[:, :3] / np.linalg.norm(raw[:, :3], axis=1, keepdims=True)  # slice first, then normalize
    np.testing.assert_allclose(cut, want, rtol=1e-5, atol=1e-6)
    model2 = SentenceTransformer(make_model(tmp_path / "m2", normalize=False), truncate_dim=4)
    assert model2.get_sentence_embedding_dimension() == 4
    assert model2.encode(TEXTS).shape == (len(TEXTS), 4)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_matches_util_quantize(tiny_model, precision):
    from lightembed.util import quantize_embeddings

    model = SentenceTransformer(tiny_model)
    floats = model.encode(TEXTS)
    quant = model.encode(TEXTS, precision=precision)
    np.testing.assert_array_equal(quant, quantize_embeddings(floats, precision=precision))
    assert quant.dtype == (np.int8 if precision in ("int8", "binary") else np.uint8)


def _pool_reference(text: str, mode: str) -> np.ndarray:
    tok = token_embeddings(text)
    n = len(tok)
    if mode == "cls":
        return tok[0]
    if mode == "max":
        return tok.max(axis=0)
    if mode == "mean":
        return tok.mean(axis=0)
    if mode == "mean_sqrt_len_tokens":
        return tok.sum(axis=0) / np.sqrt(n)
    if mode == "weightedmean":
        w = np.arange(1, n + 1, dtype=np.float32)[:, None]
        return (tok * w).sum(axis=0) / w.sum()
    if mode == "lasttoken":
        return tok[-1]
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_each_pooling_mode_new_config_format(tmp_path, mode):
    folder = make_model(tmp_path / mode, pooling={"embedding_dimension": HIDDEN, "pooling_mode": mode}, normalize=False)
    out = SentenceTransformer(folder).encode(TEXTS, batch_size=2)
    want = np.stack([_pool_reference(t, mode) for t in TEXTS])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_legacy_booleans_concatenate_in_sentence_transformers_order(tmp_path):
    config = {
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_cls_token": True,
        "pooling_mode_max_tokens": True,
    }
    model = SentenceTransformer(make_model(tmp_path / "m", pooling=config, normalize=False))
    assert model.get_sentence_embedding_dimension() == 3 * HIDDEN
    out = model.encode(TEXTS)
    want = np.stack([np.concatenate([_pool_reference(t, m) for m in ("cls", "max", "mean")]) for t in TEXTS])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_new_format_list_keeps_its_own_order(tmp_path):
    config = {"embedding_dimension": HIDDEN, "pooling_mode": ["lasttoken", "cls"]}
    out = SentenceTransformer(make_model(tmp_path / "m", pooling=config, normalize=False)).encode(TEXTS)
    want = np.stack([np.concatenate([_pool_reference(t, "lasttoken"), _pool_reference(t, "cls")]) for t in TEXTS])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_prompts_prompt_name_default_and_include_prompt_false(tmp_path):
    prompts = {"query": "query ", "document": "passage "}
    folder = make_model(
        tmp_path / "m",
        prompts=prompts,
        pooling={"embedding_dimension": HIDDEN, "pooling_mode": "mean", "include_prompt": False},
        normalize=False,
    )
    model = SentenceTransformer(folder)
    assert model.prompts == prompts
    out = model.encode(["red dog"], prompt_name="query")
    tok = token_embeddings("query red dog")
    np.testing.assert_allclose(out[0], tok[2:].mean(axis=0), rtol=1e-5, atol=1e-6)  # [CLS] query excluded
    np.testing.assert_allclose(model.encode_query(["red dog"]), out, atol=1e-7)
    doc = model.encode_document(["red dog"])
    np.testing.assert_allclose(doc[0], token_embeddings("passage red dog")[2:].mean(axis=0), rtol=1e-5, atol=1e-6)
    explicit = model.encode(["red dog"], prompt="hello world ")
    np.testing.assert_allclose(
        explicit[0], token_embeddings("hello world red dog")[3:].mean(axis=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="nope"):
        model.encode(["x"], prompt_name="nope")
    with_default = SentenceTransformer(folder, default_prompt_name="query")
    np.testing.assert_allclose(with_default.encode(["red dog"]), out, atol=1e-7)


def test_dense_layer_with_activation(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, HIDDEN)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    folder = make_model(tmp_path / "m", dense=(w, b, "torch.nn.modules.activation.Tanh"), normalize=True)
    model = SentenceTransformer(folder)
    assert model.get_sentence_embedding_dimension() == 5
    out = model.encode(TEXTS)
    pooled = np.stack([expected_mean(t, normalize=False) for t in TEXTS])
    y = np.tanh(pooled @ w.T + b)
    np.testing.assert_allclose(out, y / np.linalg.norm(y, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_no_modules_json_means_mean_pooling(tmp_path):
    out = SentenceTransformer(make_model(tmp_path / "m", modules_json=False)).encode(TEXTS)
    want = np.stack([token_embeddings(t, 64).mean(axis=0) for t in TEXTS])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_graph_without_token_type_ids_and_with_int32_inputs(tmp_path):
    a = SentenceTransformer(make_model(tmp_path / "a", token_type_ids=False))
    assert a._graph.input_names == ["input_ids", "attention_mask"]
    emb, types = weights()
    ids = [VOCAB[t] for t in ("[CLS]", "hello", "world", "[SEP]")]
    v = emb[ids].mean(axis=0)  # no type embedding added
    np.testing.assert_allclose(a.encode("hello world"), v / np.linalg.norm(v), rtol=1e-5, atol=1e-6)
    b = SentenceTransformer(make_model(tmp_path / "b", int32=True))
    np.testing.assert_allclose(b.encode(TEXTS), np.stack([expected_mean(t) for t in TEXTS]), rtol=1e-5, atol=1e-6)


def test_similarity_uses_the_configured_function(tmp_path):
    cos_model = SentenceTransformer(make_model(tmp_path / "c", normalize=False))
    e = cos_model.encode(TEXTS[:3])
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(cos_model.similarity(e, e), unit @ unit.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cos_model.similarity_pairwise(e, e), np.ones(3), rtol=1e-5)
    dot_model = SentenceTransformer(make_model(tmp_path / "d", normalize=False, similarity_fn_name="dot"))
    assert dot_model.similarity_fn_name == "dot"
    np.testing.assert_allclose(dot_model.similarity(e, e), e @ e.T, rtol=1e-5, atol=1e-5)


def test_eight_threads_give_the_single_threaded_results(tiny_model):
    model = SentenceTransformer(tiny_model)
    texts = [f"{w} the cat sat {v}" for w in ("red", "blue", "green") for v in ("fast", "slow", "big", "small")] * 5
    expected = model.encode(texts, batch_size=4)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = model.encode(texts[i:] + texts[:i], batch_size=4)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        np.testing.assert_array_equal(results[i], np.roll(expected, -i, axis=0))


def test_every_model_class_answers_get_max_seq_length(tiny_model):
    from lightembed.cross_encoder import CrossEncoder
    from lightembed.sparse_encoder import SparseEncoder

    from tests.test_cross_encoder import make_ce
    from tests.test_sparse_encoder import make_splade

    models = {
        # sentence_bert_config.json's max_seq_length
        SentenceTransformer(tiny_model): 12,
        # no sentence-transformers config: tokenizer_config's 512 capped by max_position_embeddings (64)
        CrossEncoder(make_ce(tiny_model.parent / "ce")): 64,
        SparseEncoder(make_splade(tiny_model.parent / "splade", max_seq_length=10)): 10,
        SparseEncoder(make_splade(tiny_model.parent / "splade-default", max_seq_length=None)): 64,
    }
    for model, length in models.items():
        assert model.get_max_seq_length() == length == model.max_seq_length, type(model).__name__
        model.max_seq_length = 7
        assert model.get_max_seq_length() == 7, type(model).__name__
        text = "the cat sat on the mat in the park"
        inputs = [(text, "dog")] if isinstance(model, CrossEncoder) else [text]
        assert model.tokenize(inputs)["input_ids"].shape[1] == 7, type(model).__name__


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_places_every_token_of_every_row(tiny_model, side):
    """The one-step (vectorized) padding puts each text's ids, type ids and mask where a per-row copy would."""
    from lightembed.tokenize import Tokenizer

    tokenizer = Tokenizer.from_dir(tiny_model, 12)
    tokenizer.padding_side = side
    texts = ["the cat", "", "a dog ran in the park hello world", ("red", "blue green"), "x"]
    encodings = tokenizer.encode(texts)
    batch = tokenizer.pad(encodings)
    width = max(len(e.ids) for e in encodings)
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape == (len(texts), width)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        real = slice(width - n, width) if side == "left" else slice(0, n)
        pad = slice(0, width - n) if side == "left" else slice(n, width)
        assert batch.input_ids[row, real].tolist() == enc.ids
        assert batch.token_type_ids[row, real].tolist() == enc.type_ids
        assert batch.attention_mask[row, real].all() and not batch.attention_mask[row, pad].any()
        assert (batch.input_ids[row, pad] == tokenizer.pad_id).all()
    assert batch.lengths.tolist() == [len(e.ids) for e in encodings]
    assert any(1 in e.type_ids for e in encodings)  # the pair really has second-segment type ids
    assert tokenizer.pad([]).input_ids.shape == (0, 0)

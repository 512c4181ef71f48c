"""TEI's and Cohere's routes on `lightembed serve` (a real subprocess on loopback), checked against the library:
/tokenize, /decode, /similarity, /embed_all, /predict, truncation_direction "Left", Cohere /v2/embed and rerank
(/v1/rerank, /v2/rerank) with the real cohere client, huggingface_hub's InferenceClient on /, /info and /health,
/openapi.json and /docs, --default-model, and the token-id hint for LangChain."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from lightembed import CrossEncoder, SentenceTransformer
from lightembed.activations import Identity
from lightembed.util import quantize_embeddings
from tests.test_cross_encoder import make_ce
from tests.test_server import KEY, TEXTS, Server, http
from tests.tiny import WORDS, make_model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("routes")
    return {
        "emb": make_model(root / "emb", normalize=False, prompts={"query": "query ", "passage": ""}),
        "other": make_model(root / "other", normalize=False, pooling={"pooling_mode_cls_token": True,
                                                                       "pooling_mode_mean_tokens": False}),
        "rr": make_ce(root / "rr"),
        "cls": make_ce(root / "cls", num_labels=3, config_extra={"id2label": {"0": "neg", "1": "neu", "2": "pos"}}),
    }


@pytest.fixture(scope="module")
def server(folders):
    srv = Server([f"{folders['emb']}=emb", f"{folders['rr']}=rr", f"{folders['cls']}=cls", "--api-key", KEY,
                  "--max-batch-items", "4"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def emb(folders):
    return SentenceTransformer(folders["emb"])


def post(server, path, body, status=200):
    got, _, answer = http("POST", server.url + path, body, KEY)
    assert got == status, answer
    return answer


# ----- TEI -------------------------------------------------------------------------------------------------------
def test_tokenize_gives_the_models_tokens_with_offsets(server, emb):
    text = "the cat sat on the mat"
    got = post(server, "/tokenize", {"inputs": [text, "hello"]})
    enc = emb.tokenize_inputs([text])[0]
    assert [t["id"] for t in got[0]] == enc.ids
    assert got[0][0] == {"id": enc.ids[0], "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert [t["text"] for t in got[0][1:-1]] == text.split()
    assert all(text[t["start"]:t["stop"]] == t["text"] for t in got[0] if not t["special"])
    plain = post(server, "/tokenize", {"inputs": "hello", "add_special_tokens": False})
    assert [t["text"] for t in plain[0]] == ["hello"]
    prompted = post(server, "/tokenize", {"inputs": "hello", "prompt_name": "query"})
    assert [t["text"] for t in prompted[0][1:-1]] == ["query", "hello"]


def test_decode_is_the_inverse_of_tokenize(server, emb):
    ids = emb.tokenize_inputs(["the cat sat"])[0].ids
    assert post(server, "/decode", {"ids": ids[1:-1]}) == ["the cat sat"]
    # (the tiny tokenizer's [CLS]/[SEP] are not registered as special, so skipping them is up to the tokenizer)
    assert post(server, "/decode", {"ids": ids}) == [emb.tokenizer.decode(ids, skip_special_tokens=True)]
    assert post(server, "/decode", {"ids": [ids, ids[:2]], "skip_special_tokens": False}) == [
        emb.tokenizer.decode(ids, skip_special_tokens=False), emb.tokenizer.decode(ids[:2], skip_special_tokens=False)]
    assert "`ids`" in post(server, "/decode", {"ids": ["a"]}, 422)["error"]
    assert "beyond the model" in post(server, "/decode", {"ids": [10**6]}, 422)["error"]


def test_similarity_is_the_cosine_of_encode(server, emb):
    source, sentences = "the cat sat", ["a dog ran", "the cat sat on the mat", "red"]
    got = post(server, "/similarity", {"inputs": {"source_sentence": source, "sentences": sentences}})
    vectors = emb.encode([source, *sentences], normalize_embeddings=True)
    np.testing.assert_allclose(got, vectors[1:] @ vectors[0], rtol=1e-5, atol=1e-6)
    assert "source_sentence" in post(server, "/similarity", {"inputs": "x"}, 422)["error"]


def test_embed_all_gives_encodes_token_embeddings(server, emb):
    got = post(server, "/embed_all", {"inputs": TEXTS[:3]})
    want = emb.encode(TEXTS[:3], output_value="token_embeddings")
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.array(g), w, rtol=1e-5, atol=1e-6)


def test_truncation_direction_left_keeps_the_end(server, emb):
    words = (WORDS * 2)[:20]
    text = " ".join(words)
    kept = emb.max_seq_length - 2  # [CLS] and [SEP]
    want = emb.encode(" ".join(words[-kept:]), normalize_embeddings=True)
    got = post(server, "/embed", {"inputs": text, "truncation_direction": "Left"})
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)
    right = post(server, "/embed", {"inputs": text, "truncation_direction": "Right"})
    np.testing.assert_allclose(right[0], emb.encode(text, normalize_embeddings=True), rtol=1e-5, atol=1e-6)
    assert not np.allclose(right[0], got[0])
    assert "Left" in post(server, "/embed", {"inputs": "a", "truncation_direction": "up"}, 422)["error"]
    assert "pairs" in post(server, "/rerank", {"model": "rr", "query": "a", "texts": ["b"], "truncation_direction": "Left"}, 400)["error"]


def test_predict_classifies_with_the_cross_encoders_scores(server, folders):
    ce = CrossEncoder(folders["cls"])
    items = ["the cat sat", ["a dog", "ran fast"]]
    raw = np.stack([ce.forward(ce.pad(ce.tokenize_inputs([i if isinstance(i, str) else tuple(i)])), activation_fn=Identity())[0]
                    for i in items])
    soft = np.exp(raw - raw.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    got = post(server, "/predict", {"inputs": items, "model": "cls"})
    for row, want in zip(got, soft):
        assert [g["label"] for g in row] == [["neg", "neu", "pos"][j] for j in np.argsort(-want, kind="stable")]
        assert {g["label"]: g["score"] for g in row} == pytest.approx(dict(zip(["neg", "neu", "pos"], want)), rel=1e-5)
    single = post(server, "/predict", {"inputs": ["a dog", "ran fast"], "model": "cls"})  # one pair
    assert [g["label"] for g in single] == [g["label"] for g in got[1]]
    assert [g["score"] for g in single] == pytest.approx([g["score"] for g in got[1]], rel=1e-6)
    raw_got = post(server, "/predict", {"inputs": "the cat sat", "model": "cls", "raw_scores": True})
    assert {g["label"]: g["score"] for g in raw_got} == pytest.approx(dict(zip(["neg", "neu", "pos"], raw[0])), rel=1e-5)
    one = CrossEncoder(folders["rr"])
    pair = ("a dog", "ran fast")
    score = post(server, "/predict", {"inputs": list(pair), "model": "rr"})
    assert score[0]["score"] == pytest.approx(float(one.predict([pair])[0]), rel=1e-5)  # sigmoid, as predict()


# ----- Cohere v2 with the real client ------------------------------------------------------------------------------
def test_cohere_v2_embed_with_the_cohere_client(server, emb):
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=server.url, max_retries=0)
    texts = ["the cat sat", "a dog ran in the park"]
    res = client.embed(model="emb", texts=texts, input_type="search_query",
                       embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"])
    unit = emb.encode(texts, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(np.array(res.embeddings.float_), unit, rtol=1e-5, atol=1e-6)
    ranges = np.stack([-np.ones(unit.shape[1]), np.ones(unit.shape[1])])
    for kind, got in (("int8", res.embeddings.int8), ("uint8", res.embeddings.uint8)):
        want = quantize_embeddings(unit, kind, ranges=ranges)
        assert np.abs(np.array(got) - want.astype(np.int64)).max() <= 1  # float rounding at a bucket edge
    assert np.array(res.embeddings.binary).tolist() == quantize_embeddings(unit, "binary").tolist()
    assert np.array(res.embeddings.ubinary).tolist() == quantize_embeddings(unit, "ubinary").tolist()
    decoded = np.stack([np.frombuffer(base64.b64decode(b), dtype="<f4") for b in res.embeddings.base64])
    np.testing.assert_allclose(decoded, unit, rtol=1e-5, atol=1e-6)
    assert res.meta.billed_units.input_tokens == sum(len(e.ids) for e in emb.tokenize_inputs(["query " + t for t in texts]))

    doc = client.embed(model="emb", texts=texts, input_type="search_document", embedding_types=["float"],
                       output_dimension=4)
    want = emb.encode(texts, prompt_name="passage", truncate_dim=4, normalize_embeddings=True)
    np.testing.assert_allclose(np.array(doc.embeddings.float_), want, rtol=1e-5, atol=1e-6)

    long_text = " ".join((WORDS * 2)[:20])
    with pytest.raises(cohere.core.ApiError) as info:
        client.embed(model="emb", texts=[long_text], input_type="search_document", embedding_types=["float"],
                     truncate="NONE")
    assert info.value.status_code == 413
    start = client.embed(model="emb", texts=[long_text], input_type="clustering", embedding_types=["float"],
                         truncate="START")
    kept = emb.max_seq_length - 2
    np.testing.assert_allclose(start.embeddings.float_[0],
                               emb.encode(" ".join((WORDS * 2)[:20][-kept:]), normalize_embeddings=True),
                               rtol=1e-5, atol=1e-6)
    status, _, body = http("POST", server.url + "/v2/embed", {"model": "emb", "texts": ["a"], "embedding_types": ["fp16"]}, KEY)
    assert status == 422 and "embedding_types" in body["error"]["message"]


def test_cohere_rerank_with_the_cohere_clients_v1_and_v2(server, folders):
    import cohere

    ce = CrossEncoder(folders["rr"])
    query, docs = "the cat", ["a dog ran", "the cat sat on the mat", "hello world", "red"]
    want = ce.predict([(query, d) for d in docs])
    order = list(np.argsort(-want, kind="stable"))
    v2 = cohere.ClientV2(api_key=KEY, base_url=server.url, max_retries=0)
    res = v2.rerank(model="rr", query=query, documents=docs, top_n=3)  # posts /v2/rerank
    assert [r.index for r in res.results] == order[:3]
    assert [r.relevance_score for r in res.results] == pytest.approx([float(want[i]) for i in order[:3]], rel=1e-5)
    with pytest.raises(cohere.core.ApiError) as info:
        v2.rerank(model="rr", query=query, documents=docs, max_tokens_per_doc=4)
    assert info.value.status_code == 400
    v1 = cohere.Client(api_key=KEY, base_url=server.url, max_retries=0)
    res = v1.rerank(model="rr", query=query, documents=docs, return_documents=True)  # posts /v1/rerank
    assert [r.index for r in res.results] == order
    assert [r.document.text for r in res.results] == [docs[i] for i in order]
    assert [r.relevance_score for r in res.results] == pytest.approx([float(want[i]) for i in order], rel=1e-5)


def test_huggingface_inference_client_truncation_info_and_health(server, emb):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server.url, api_key=KEY)
    words = (WORDS * 2)[:20]
    kept = emb.max_seq_length - 2
    got = client.feature_extraction(" ".join(words), truncate=True, truncation_direction="left")
    np.testing.assert_allclose(got[0], emb.encode(" ".join(words[-kept:]), normalize_embeddings=True), rtol=1e-5, atol=1e-6)
    right = client.feature_extraction(" ".join(words), truncation_direction="right")
    np.testing.assert_allclose(right[0], emb.encode(" ".join(words), normalize_embeddings=True), rtol=1e-5, atol=1e-6)
    endpoint = InferenceClient(provider="hf-inference", api_key=KEY)  # these two take the endpoint as `model`
    info = endpoint.get_endpoint_info(model=server.url)
    assert info["model_id"] == "emb" and info["max_input_length"] == emb.max_seq_length
    assert endpoint.health_check(model=server.url) is True


# ----- docs, defaults, hints --------------------------------------------------------------------------------------
def test_openapi_lists_every_route_and_each_answers(server):
    status, headers, spec = http("GET", server.url + "/openapi.json", key=KEY)
    assert status == 200 and spec["openapi"].startswith("3.")
    for path, methods in spec["paths"].items():
        for method in methods:
            got = http(method.upper(), server.url + path, {} if method == "post" else None, KEY)[0]
            assert got != 404, path  # routed (bodies are empty, so 4xx other than 404 is fine)
    status, headers, page = http("GET", server.url + "/docs", key=KEY)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert all(f"<code>{path}</code>" in page for path in spec["paths"])


def test_token_ids_400_names_the_cause_and_the_langchain_setting(server):
    status, _, body = http("POST", server.url + "/v1/embeddings", {"model": "emb", "input": [[1, 2, 3]]}, KEY)
    assert status == 400
    message = body["error"]["message"]
    assert "token ids" in message and "check_embedding_ctx_length=False" in message


def test_requests_without_model_get_the_default_model(folders):
    srv = Server([f"{folders['emb']}=a", f"{folders['other']}=b", "--default-model", "b"])
    try:
        b = SentenceTransformer(folders["other"])
        status, _, got = http("POST", srv.url + "/embed", {"inputs": "the cat", "normalize": False})
        assert status == 200
        np.testing.assert_allclose(got[0], b.encode("the cat"), rtol=1e-5, atol=1e-6)
        status, _, got = http("POST", srv.url + "/v1/embeddings", {"input": "the cat"})
        assert status == 200 and got["model"] == "b"
    finally:
        srv.stop()
    srv = Server([f"{folders['emb']}=a", f"{folders['other']}=b"])
    try:
        status, _, body = http("POST", srv.url + "/embed", {"inputs": "the cat"})
        assert status == 422 and "--default-model" in body["error"]
    finally:
        srv.stop()


def test_huggingface_inference_client_similarity_and_classification(server, folders, emb):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server.url, api_key=KEY)
    got = client.sentence_similarity("the cat sat", ["a dog ran", "the cat sat on the mat"])
    vectors = emb.encode(["the cat sat", "a dog ran", "the cat sat on the mat"], normalize_embeddings=True)
    np.testing.assert_allclose(got, vectors[1:] @ vectors[0], rtol=1e-5, atol=1e-6)
    srv = Server([f"{folders['cls']}=cls"])  # TEI serves one model: a classifier answers / with /predict
    try:
        labels = InferenceClient(base_url=srv.url).text_classification("the cat sat")
        want = post(srv, "/predict", {"inputs": "the cat sat"})
        assert [(x.label, x.score) for x in labels] == [(w["label"], pytest.approx(w["score"])) for w in want]
    finally:
        srv.stop()

"""`chunking` on the server's /embed (TEI) and /v1/embeddings (OpenAI, with the official client) and on the
serverless handler: each input embedded whole by the model's encode_chunks (windows or late chunking, every chunk
with its character span, or one document vector), checked against the library; bad options are 4xx naming them."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from lightembed import SentenceTransformer
from lightembed.server import protocol
from tests.test_chunking import LONG, SHORT, _write_context_graph
from tests.test_server import KEY, Server, http
from tests.tiny import make_model

CHUNKING = {"chunk_size": 8, "overlap": 2}


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunking")
    context = make_model(root / "ctx")
    _write_context_graph(context / "onnx" / "model.onnx")  # every token sees the whole input: late != windows
    return {"emb": make_model(root / "emb", normalize=False), "ctx": context}


@pytest.fixture(scope="module")
def server(folders):
    srv = Server([f"{folders['emb']}=emb", f"{folders['ctx']}=ctx", "--api-key", KEY])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def emb(folders):
    return SentenceTransformer(folders["emb"])


@pytest.fixture(scope="module")
def ctx(folders):
    return SentenceTransformer(folders["ctx"])


def post(server, path, body, status=200):
    got, _, answer = http("POST", server.url + path, body, KEY)
    assert got == status, answer
    return answer


def _check_chunks(got: list, chunked, expected: np.ndarray) -> None:
    assert [(c["start"], c["end"]) for c in got] == chunked.offsets
    assert [c["tokens"] for c in got] == list(chunked.token_counts)
    np.testing.assert_allclose(np.array([c["embedding"] for c in got]), expected, atol=1e-6)


def test_tei_embed_chunks_are_encode_chunks(server, emb):
    chunked = emb.encode_chunks([LONG, SHORT], **CHUNKING)
    assert len(chunked[0].offsets) > 2
    raw = post(server, "/embed", {"model": "emb", "inputs": [LONG, SHORT], "chunking": CHUNKING, "normalize": False})
    for got, want in zip(raw, chunked):
        _check_chunks(got, want, want.embeddings)
        assert all(LONG[c["start"]:c["end"]] for c in got)
    unit = post(server, "/embed", {"model": "emb", "inputs": LONG, "chunking": CHUNKING, "dimensions": 8})
    _check_chunks(unit[0], chunked[0], _l2(chunked[0].embeddings[:, :8]))
    # defaults: windows of max_seq_length tokens without overlap, as encode_chunks(text) cuts them
    plain = post(server, "/embed", {"model": "emb", "inputs": LONG, "chunking": {}, "normalize": False})
    _check_chunks(plain[0], emb.encode_chunks(LONG), emb.encode_chunks(LONG).embeddings)
    # without chunking the text is cut at max_seq_length: one vector, the first chunk's
    cut = post(server, "/embed", {"model": "emb", "inputs": LONG, "normalize": False})
    np.testing.assert_allclose(cut, emb.encode([LONG]), atol=1e-6)


def test_tei_embed_document_output(server, emb):
    chunked = emb.encode_chunks([LONG, SHORT], **CHUNKING)
    body = {"model": "emb", "inputs": [LONG, SHORT], "chunking": {**CHUNKING, "output": "document"}}
    raw = post(server, "/embed", {**body, "normalize": False})
    np.testing.assert_allclose(raw, [c.document_embedding for c in chunked], atol=1e-6)
    np.testing.assert_allclose(post(server, "/embed", body), _l2(np.array(raw)), atol=1e-6)


def test_late_chunking_on_the_server_is_the_models(server, ctx):
    late = ctx.encode_chunks([LONG, SHORT], **CHUNKING, late_chunking=True)
    windows = ctx.encode_chunks(LONG, **CHUNKING)
    got = post(server, "/embed", {"model": "ctx", "inputs": [LONG, SHORT], "chunking": {**CHUNKING, "mode": "late"}})
    for entries, want in zip(got, late):
        _check_chunks(entries, want, want.embeddings)  # the model normalizes
    assert np.abs(np.array([c["embedding"] for c in got[0]]) - windows.embeddings).max() > 0.01


def test_openai_client_reads_chunks_and_document_vectors(server, emb):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    chunked = emb.encode_chunks([LONG, SHORT], **CHUNKING)
    # the client asks for base64 and decodes each entry itself: every chunk entry is a regular embedding entry
    out = client.embeddings.create(model="emb", input=[LONG, SHORT], extra_body={"chunking": CHUNKING})
    for i, want in enumerate(chunked):
        entries = [d for d in out.data if d.index == i]
        assert [d.model_extra["chunk"] for d in entries] == list(range(len(want.offsets)))
        assert [(d.model_extra["start"], d.model_extra["end"]) for d in entries] == want.offsets
        np.testing.assert_allclose([d.embedding for d in entries], _l2(want.embeddings), atol=1e-6)
    assert [d.index for d in out.data] == sorted(d.index for d in out.data)  # an input's chunks are consecutive
    assert out.usage.prompt_tokens == sum(int(c.token_counts.sum()) for c in chunked)
    doc = client.embeddings.create(model="emb", input=[LONG, SHORT], encoding_format="float",
                                   extra_body={"chunking": {**CHUNKING, "output": "document"}})
    assert [d.index for d in doc.data] == [0, 1]
    np.testing.assert_allclose([d.embedding for d in doc.data], _l2(np.array([c.document_embedding for c in chunked])),
                               atol=1e-6)


@pytest.mark.parametrize(("path", "body", "status", "param", "says"), [
    ("/embed", {"chunking": {"chunk_size": 8, "overlap": 6}}, 422, "chunking.overlap", "must be smaller"),
    ("/embed", {"chunking": {"chunk_size": 2}}, 422, "chunking.chunk_size", "special tokens"),
    ("/embed", {"chunking": {"size": 8}}, 422, "chunking.size", "not a chunking option"),
    ("/embed", {"chunking": {"mode": "fast"}}, 422, "chunking.mode", "'windows', 'late'"),
    ("/embed", {"chunking": {"output": "both"}}, 422, "chunking.output", "'chunks', 'document'"),
    ("/embed", {"chunking": {"overlap": -1}}, 422, "chunking.overlap", "non-negative"),
    ("/embed", {"chunking": {"chunk_size": True}}, 422, "chunking.chunk_size", "positive integer"),
    ("/embed", {"chunking": 256}, 422, "chunking", "must be an object"),
    ("/embed", {"chunking": {}, "prompt_name": "query"}, 400, "prompt_name", "does not apply"),
    ("/v1/embeddings", {"chunking": {"mode": "late"}, "input": ["x", " ".join([LONG] * 3)]}, 413, "input[1]",
     "more than this model's 64 positions"),
    ("/v1/embeddings", {"chunking": {"overlap": "2"}}, 422, "chunking.overlap", "non-negative integer"),
])  # fmt: skip
def test_bad_chunking_is_a_4xx_naming_the_option(server, path, body, status, param, says):
    texts = "input" if path.startswith("/v1") else "inputs"
    answer = post(server, path, {"model": "emb", texts: LONG, **body}, status)
    if path.startswith("/v1"):
        assert answer["error"]["param"] == param and says in answer["error"]["message"], answer
    else:
        assert f"`{param.split('.')[0]}" in answer["error"] and says in answer["error"], answer


def test_openapi_documents_chunking(server):
    document = http("GET", server.url + "/openapi.json", key=KEY)[2]
    for path in ("/embed", "/v1/embeddings"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]["chunking"]["properties"]) == set(protocol.CHUNKING_OPTIONS)


def test_serverless_handler_takes_chunking(folders, emb, monkeypatch):
    monkeypatch.delenv("LIGHTEMBED_MODEL_NAME", raising=False)
    import lightembed.serverless as module

    module.load(str(folders["emb"]))
    try:
        status, body = module.respond({"input": LONG, "chunking": CHUNKING, "encoding_format": "base64"})
        assert status == 200, body
        chunked = emb.encode_chunks(LONG, **CHUNKING)
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
        np.testing.assert_allclose(got, _l2(chunked.embeddings), atol=1e-6)
        assert [(d["start"], d["end"]) for d in body["data"]] == chunked.offsets
        status, body = module.respond({"input": LONG, "chunking": {"overlap": 99}})
        assert status == 422 and body["error"]["param"] == "chunking.overlap", body
    finally:
        module._models, module._load_error = None, None


def test_late_chunking_on_a_model2vec_folder_is_a_400(tmp_path):
    """model2vec drops the unknown token at padding, so its token positions are not the text's: late chunking is
    refused (windows give the same vectors), as a 400 naming `chunking.mode`."""
    from tests.static_models import model2vec_static

    model = SentenceTransformer(model2vec_static(tmp_path))
    with pytest.raises(protocol.BadRequest, match="windows") as refused:
        protocol.embed_chunks(model, [LONG], protocol.Chunking(mode="late"))
    assert refused.value.param == "chunking.mode" and refused.value.status == 400
    assert len(protocol.embed_chunks(model, [LONG], protocol.Chunking(chunk_size=4))[0].offsets) > 1

"""Jina's /v1/multi-vector on `lightembed serve` (a real subprocess on loopback, plain HTTP as Jina's API is
called): a tiny seeded multi-vector (ColBERT) model that sentence-transformers 6.2 saves (tests/st6.py) is loaded
as a MultiVectorEncoder and answers each input's token vectors as encode_query / encode_document give them."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from lightembed import MultiVectorEncoder
from lightembed.server.loading import model_kind
from lightembed.server.model import MultiVectorModel
from tests.st6 import DOCUMENTS, QUERIES
from tests.st6_venv import build
from tests.test_server import KEY, Server, http
from tests.tiny import make_model


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mv-server")
    build(root, "multi_vector")
    return {"colbert": root / "multi_vector", "emb": Path(make_model(root / "emb"))}


@pytest.fixture(scope="module")
def server(folders):
    srv = Server([f"{folders['colbert']}=colbert", f"{folders['emb']}=emb", "--api-key", KEY])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(folders) -> MultiVectorEncoder:
    return MultiVectorEncoder(str(folders["colbert"]))


def post(server, body, status=200, path="/v1/multi-vector"):
    got, _, answer = http("POST", server.url + path, body, KEY)
    assert got == status, answer
    return answer


def test_a_multi_vector_folder_is_served_as_a_multi_vector_encoder(server, folders, local):
    assert model_kind(folders["colbert"]) == "multi_vector"
    assert isinstance(local, MultiVectorModel)
    _, _, models = http("GET", server.url + "/v1/models", key=KEY)
    assert {m["id"]: m["kind"] for m in models["data"]} == {"colbert": "multi_vector", "emb": "embed"}
    _, _, info = http("GET", server.url + "/info", key=KEY)
    colbert = next(m for m in info["models"] if m["model_id"] == "colbert")
    assert colbert["class"] == "MultiVectorEncoder" and colbert["model_type"] == {"multi_vector": {"dimension": 16}}


def test_queries_and_documents_get_encode_query_and_encode_document(server, local):
    got = post(server, {"model": "colbert", "input": QUERIES, "input_type": "query"})
    want = local.encode_query(QUERIES)
    assert got["object"] == "list" and got["model"] == "colbert"
    assert [d["index"] for d in got["data"]] == list(range(len(QUERIES)))
    assert [len(d["embeddings"]) for d in got["data"]] == [len(w) for w in want] == [10] * len(QUERIES)  # expansion
    for d, w in zip(got["data"], want):
        np.testing.assert_allclose(np.array(d["embeddings"]), w, rtol=1e-5, atol=1e-6)
    docs = post(server, {"input": DOCUMENTS})  # input_type defaults to "document", the only multi-vector model
    want = local.encode_document(DOCUMENTS)
    assert [len(d["embeddings"]) for d in docs["data"]] == [len(w) for w in want]  # skiplist, document_length
    for d, w in zip(docs["data"], want):
        np.testing.assert_allclose(np.array(d["embeddings"]), w, rtol=1e-5, atol=1e-6)
    tokens = sum(len(e.ids) for e in local.tokenize_inputs(DOCUMENTS))
    assert docs["usage"] == {"total_tokens": tokens, "prompt_tokens": tokens}
    one = post(server, {"input": DOCUMENTS[0], "input_type": "document"})
    np.testing.assert_allclose(np.array(one["data"][0]["embeddings"]), want[0], rtol=1e-5, atol=1e-6)


def test_base64_and_dimensions(server, local):
    want = local.encode_document(DOCUMENTS[:2])
    got = post(server, {"input": DOCUMENTS[:2], "embedding_type": "base64"})
    for d, w in zip(got["data"], want):
        decoded = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in d["embeddings"]])
        np.testing.assert_allclose(decoded, w, rtol=1e-5, atol=1e-6)
    cut = post(server, {"input": DOCUMENTS[:2], "dimensions": 8})
    for d, w in zip(cut["data"], want):
        short = w[:, :8] / np.linalg.norm(w[:, :8], axis=1, keepdims=True)
        np.testing.assert_allclose(np.array(d["embeddings"]), short, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"input": ["a"], "input_type": "search_query"}, 422, '`input_type` must be "query" or "document"'),
        ({"input": ["a"], "embedding_type": "int8"}, 422, "`embedding_type`"),
        ({"input": ["a"], "dimensions": 17}, 422, "at most 16"),
        ({"input": []}, 422, "must not be empty"),
        ({"input": ["a"], "model": "emb"}, 400, "'emb' is a SentenceTransformer"),
    ],
)
def test_bad_requests_name_the_field(server, body, status, words):
    assert words in post(server, body, status)["error"]["message"]


def test_other_routes_refuse_the_multi_vector_model(server):
    message = post(server, {"model": "colbert", "input": "a"}, 400, "/v1/embeddings")["error"]["message"]
    assert "colbert" in message
    assert "colbert" in post(server, {"model": "colbert", "inputs": "a"}, 400, "/embed")["error"]
    assert "/v1/multi-vector" in post(server, {"model": "colbert", "inputs": "a"}, 400, "/")["error"]


def test_the_class_the_exporter_recorded_decides_the_kind(tmp_path):
    from lightembed import manifest

    manifest.write(tmp_path, {"format_version": 1, "model": {"class": "MultiVectorEncoder"}, "files": []})
    assert model_kind(tmp_path) == "multi_vector"

"""The framework-free OpenAI protocol core: parsing, limits, errors, and results equal to encode()."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from lightembed import CrossEncoder, SentenceTransformer
from lightembed.server import protocol as p
from tests.test_cross_encoder import make_ce
from tests.tiny import make_model

TEXTS = ["the cat sat on the mat", "hello", "a dog ran in the park fast", "red blue green"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("proto")
    emb = SentenceTransformer(make_model(root / "emb", normalize=False))
    ce = CrossEncoder(make_ce(root / "ce"))
    return {"emb": emb, "ce": ce}


def test_embed_equals_encode_with_dimensions_renormalized(models):
    model = models["emb"]
    req = p.parse_embeddings_request({"model": "emb", "input": TEXTS}, models)
    vectors, tokens = p.embed(req, model, batch_size=3)
    np.testing.assert_allclose(vectors, model.encode(TEXTS, normalize_embeddings=True), rtol=1e-6, atol=1e-6)
    assert tokens == sum(len(t.split()) + 2 for t in TEXTS)
    req = p.parse_embeddings_request({"model": "emb", "input": TEXTS, "dimensions": 3}, models)
    vectors, _ = p.embed(req, model)
    assert vectors.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        vectors, model.encode(TEXTS, truncate_dim=3, normalize_embeddings=True), rtol=1e-6, atol=1e-6
    )


def test_response_float_and_base64_decode_to_the_same_floats(models):
    req = p.parse_embeddings_request({"model": "emb", "input": TEXTS, "encoding_format": "base64"}, models)
    vectors, tokens = p.embed(req, models["emb"])
    body = json.loads(json.dumps(p.embeddings_response(req, vectors, tokens)))
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    np.testing.assert_array_equal(decoded, vectors)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    req = p.parse_embeddings_request({"model": "emb", "input": "hello"}, models)
    body = p.embeddings_response(req, *p.embed(req, models["emb"]))
    np.testing.assert_allclose(body["data"][0]["embedding"], vectors[1], rtol=1e-6)


@pytest.mark.parametrize(
    "body, error, param, words",
    [
        ({"model": "emb"}, p.InvalidField, "input", "required"),
        ({"model": "emb", "input": 3}, p.InvalidField, "input", "got a number"),
        ({"model": "emb", "input": []}, p.InvalidField, "input", "empty"),
        ({"model": "emb", "input": ["a", None]}, p.InvalidField, "input[1]", "got null"),
        ({"model": "emb", "input": [[1, 2, 3]]}, p.BadRequest, "input", "token ids"),
        ({"model": "emb", "input": [5, 6]}, p.BadRequest, "input", "token ids"),
        ({"model": "nope", "input": "a"}, p.NotFound, "model", "'nope' is not served"),
        ({"model": "ce", "input": "a"}, p.BadRequest, "model", "CrossEncoder"),
        ({"model": 3, "input": "a"}, p.InvalidField, "model", "got a number"),
        ({"model": "emb", "input": "a", "encoding_format": "int8"}, p.InvalidField, "encoding_format", "int8"),
        ({"model": "emb", "input": "a", "dimensions": 0}, p.InvalidField, "dimensions", "positive"),
        ({"model": "emb", "input": "a", "dimensions": True}, p.InvalidField, "dimensions", "boolean"),
        ({"model": "emb", "input": "a", "dimensions": 99}, p.InvalidField, "dimensions", "at most 8"),
        ({"model": "emb", "input": ["a"] * 5}, p.PayloadTooLarge, "input", "at most 4"),
        ({"model": "emb", "input": ["a", "x" * 11]}, p.PayloadTooLarge, "input[1]", "at most 10 per input"),
    ],
)
def test_bad_requests_name_the_field_with_the_right_status(models, body, error, param, words):
    limits = p.Limits(max_inputs=4, max_chars=10)
    with pytest.raises(error) as info:
        p.parse_embeddings_request(body, models, limits)
    exc = info.value
    assert exc.param == param and words in exc.message
    assert exc.openai_body()["error"]["message"] == exc.message
    assert exc.tei_body()["error"] == exc.message
    assert {p.BadRequest: 400, p.InvalidField: 422, p.NotFound: 404, p.PayloadTooLarge: 413}[error] == exc.status


def test_model_may_be_left_out_when_one_embedding_model_is_served(models):
    assert p.parse_embeddings_request({"input": "a"}, models).model == "emb"
    with pytest.raises(p.InvalidField, match="`model` is required"):
        p.parse_embeddings_request({"input": "a"}, {**models, "emb2": models["emb"]})


def test_read_json_limits_and_shapes():
    assert p.read_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(p.PayloadTooLarge):
        p.read_json(b'{"a": "' + b"x" * 100 + b'"}', p.Limits(max_body_bytes=50))
    with pytest.raises(p.InvalidField, match="not valid JSON"):
        p.read_json(b"{nope")
    with pytest.raises(p.InvalidField, match="got an array"):
        p.read_json(b"[1]")
    with pytest.raises(p.InvalidField, match="not valid JSON"):
        p.read_json(b"\xff\xfe")


def test_error_classes_statuses_and_headers():
    assert p.ApiError(418, "teapot", "odd").status == 418
    assert p.ApiError(418, "teapot", "odd").openai_body()["error"]["type"] == "odd"
    assert p.Unauthorized("no key").status == 401 and p.Unauthorized("x").headers() == {"WWW-Authenticate": "Bearer"}
    assert p.Overloaded("full", retry_after=3).headers() == {"Retry-After": "3"}
    assert p.Overloaded("full").status == 429
    assert p.Unavailable("stopping").status == 503 and p.RequestTimeout("slow").status == 503


def test_protocol_imports_no_web_framework():
    import subprocess
    import sys

    code = (
        "import sys, lightembed.server.protocol\n"
        "bad = [m for m in ('starlette', 'uvicorn', 'fastapi', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_prompt_is_applied_as_encode_does(tmp_path):
    model = SentenceTransformer(
        make_model(tmp_path / "p", normalize=False, prompts={"query": "query "}, default_prompt_name="query")
    )
    req = p.parse_embeddings_request({"input": TEXTS}, {"m": model})
    vectors, tokens = p.embed(req, model)
    np.testing.assert_allclose(vectors, model.encode(TEXTS, normalize_embeddings=True), rtol=1e-6, atol=1e-6)
    assert tokens == sum(len(t.split()) + 3 for t in TEXTS)  # the prompt's token counts
    plain = model.encode(TEXTS, prompt="", normalize_embeddings=True)
    assert not np.allclose(vectors, plain, atol=1e-4)


def test_every_model_class_is_a_served_model(tmp_path):
    from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
    from lightembed.server.model import EmbeddingModel, ServedModel
    from tests.test_cross_encoder import make_ce
    from tests.test_sparse_encoder import make_splade
    from tests.tiny import make_model

    for model in (SentenceTransformer(make_model(tmp_path / "e")), CrossEncoder(make_ce(tmp_path / "c")),
                  SparseEncoder(make_splade(tmp_path / "s"))):
        assert isinstance(model, ServedModel), type(model).__name__
        assert isinstance(model, EmbeddingModel) == isinstance(model, SentenceTransformer)
    assert not isinstance(object(), ServedModel)

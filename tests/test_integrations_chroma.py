"""lightembed.integrations.chroma against the real chromadb: vectors equal encode(), prompts by role, EphemeralClient
retrieval equals brute force, a persisted collection opens with its function rebuilt from the stored config, the
sparse function equals SparseEncoder, and Chroma's OpenAI function talks to `lightembed serve`."""

from __future__ import annotations

import os

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # no telemetry calls from the tests

import uuid  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lightembed import SparseEncoder  # noqa: E402
from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401, E402

import chromadb  # noqa: E402

from lightembed.integrations.chroma import (  # noqa: E402
    LightembedEmbeddingFunction,
    LightembedSparseEmbeddingFunction,
)


def fresh_name() -> str:
    return "docs-" + uuid.uuid4().hex[:8]


def test_vectors_equal_encode_with_the_role_prompts(folders, dense):
    ef = LightembedEmbeddingFunction(str(folders["dense"]), normalize_embeddings=True, batch_size=2)
    # the same batch_size: the same batches, so the same bits (another batch shape may move the last bit: Zen 5)
    np.testing.assert_array_equal(np.stack(ef(DOCS)),
                                  dense.encode(DOCS, prompt="passage ", normalize_embeddings=True, batch_size=2))
    query = np.stack(ef.embed_query([QUERIES[0]]))[0]
    np.testing.assert_array_equal(query, dense.encode(QUERIES[0], prompt="query ", normalize_embeddings=True))
    assert not np.allclose(query, dense.encode(QUERIES[0], normalize_embeddings=True))
    assert not ef.is_legacy()
    with pytest.raises(ValueError, match="JSON"):
        LightembedEmbeddingFunction(str(folders["dense"]), providers=[object()])


def test_ephemeral_client_top1_equals_brute_force(folders, dense):
    ef = LightembedEmbeddingFunction(str(folders["dense"]))
    col = chromadb.EphemeralClient().create_collection(
        fresh_name(), embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )
    col.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    for query, want in zip(QUERIES, answers):
        assert col.query(query_texts=[query], n_results=1)["documents"][0][0] == DOCS[want]


def test_persisted_collection_opens_with_its_function(folders, dense, tmp_path):
    name = fresh_name()
    col = chromadb.PersistentClient(path=str(tmp_path)).create_collection(
        name, embedding_function=LightembedEmbeddingFunction(str(folders["dense"]), normalize_embeddings=True),
        configuration={"hnsw": {"space": "cosine"}},
    )  # fmt: skip
    col.add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    reopened = chromadb.PersistentClient(path=str(tmp_path)).get_collection(name)  # no embedding_function given
    ef = reopened.configuration["embedding_function"]
    assert isinstance(ef, LightembedEmbeddingFunction)
    assert ef.get_config() == {"model_name": str(folders["dense"]), "device": None, "normalize_embeddings": True,
                               "batch_size": 32, "kwargs": {}}  # fmt: skip
    want = dense_answers(dense)[1]
    assert reopened.query(query_texts=[QUERIES[1]], n_results=1)["documents"][0][0] == DOCS[want]


def test_sparse_function_equals_sparse_encoder_and_round_trips_its_config(folders):
    splade = SparseEncoder(folders["sparse"])
    ef = LightembedSparseEmbeddingFunction(str(folders["sparse"]))
    docs = ef(DOCS)
    want = splade.encode(DOCS, prompt_name="document")
    assert [d.indices for d in docs] == [r.indices.tolist() for r in want]
    assert [d.values for d in docs] == [r.values.tolist() for r in want]
    [query] = ef.embed_query([QUERIES[0]])
    assert query.indices == splade.encode(QUERIES[0], prompt="query ").indices.tolist()
    rebuilt = LightembedSparseEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == ef.get_config() and rebuilt._model is ef._model

    from chromadb.utils.embedding_functions import sparse_known_embedding_functions

    assert sparse_known_embedding_functions["lightembed_sparse"] is LightembedSparseEmbeddingFunction


def test_openai_function_over_http_equals_encode(folders, dense):
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

    with served(folders["dense"], "emb") as server:
        ef = OpenAIEmbeddingFunction(api_key="unused", model_name="emb", api_base=server.url + "/v1")
        got = np.stack(ef(DOCS)).astype(np.float32)
        np.testing.assert_allclose(got, dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)

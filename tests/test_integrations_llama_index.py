"""lightembed.integrations.llama_index against the real llama-index-core (and llama-index-embeddings-openai-like):
vectors equal encode(), prompts by role, VectorStoreIndex retrieval equals brute force, the postprocessor equals
CrossEncoder.rank(), and OpenAILikeEmbedding talks to `lightembed serve`."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lightembed import CrossEncoder
from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401 (fixtures)

from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from lightembed.integrations.llama_index import LightembedEmbedding, LightembedRerank  # noqa: E402


def test_vectors_equal_encode_with_the_role_prompts(folders, dense):
    emb = LightembedEmbedding(model_name=str(folders["dense"]), embed_batch_size=4)
    got = np.array(emb.get_text_embedding_batch(DOCS), dtype=np.float32)
    np.testing.assert_array_equal(got, dense.encode(DOCS, prompt="passage ", normalize_embeddings=True))
    got = np.array(emb.get_text_embedding(DOCS[0]), dtype=np.float32)
    np.testing.assert_array_equal(got, dense.encode(DOCS[0], prompt="passage ", normalize_embeddings=True))
    query = np.array(emb.get_query_embedding(QUERIES[0]), dtype=np.float32)
    np.testing.assert_array_equal(query, dense.encode(QUERIES[0], prompt="query ", normalize_embeddings=True))
    assert not np.allclose(query, dense.encode(QUERIES[0], normalize_embeddings=True))


def test_instructions_normalize_and_async(folders, dense):
    emb = LightembedEmbedding(model_name=str(folders["dense"]), normalize=False, query_instruction="hello ",
                              text_instruction="")  # fmt: skip
    np.testing.assert_array_equal(
        np.array(asyncio.run(emb.aget_query_embedding("cat")), dtype=np.float32), dense.encode("hello cat")
    )
    np.testing.assert_array_equal(
        np.array(asyncio.run(emb.aget_text_embedding_batch(DOCS)), dtype=np.float32), dense.encode(DOCS)
    )
    np.testing.assert_array_equal(
        np.array(asyncio.run(emb.aget_text_embedding(DOCS[1])), dtype=np.float32), dense.encode(DOCS[1])
    )


def test_vector_store_index_top1_equals_brute_force(folders, dense):
    emb = LightembedEmbedding(model_name=str(folders["dense"]))
    assert emb.client is LightembedEmbedding(model_name=str(folders["dense"])).client  # loaded once
    index = VectorStoreIndex([TextNode(text=t, id_=str(i)) for i, t in enumerate(DOCS)], embed_model=emb)
    retriever = index.as_retriever(similarity_top_k=1)
    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    for query, want in zip(QUERIES, answers):
        assert retriever.retrieve(query)[0].node.get_content() == DOCS[want]


def test_rerank_postprocessor_equals_cross_encoder_rank(folders):
    ce = CrossEncoder(folders["ce"])
    rerank = LightembedRerank(model=str(folders["ce"]), top_n=3, keep_retrieval_score=True)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.5) for i, t in enumerate(DOCS)]
    out = rerank.postprocess_nodes(nodes, QueryBundle(QUERIES[1]))
    want = ce.rank(QUERIES[1], DOCS, top_k=3)
    assert [n.node.node_id for n in out] == [str(r["corpus_id"]) for r in want]
    assert [n.score for n in out] == [float(r["score"]) for r in want]
    assert out[0].node.metadata["retrieval_score"] == 0.5
    with pytest.raises(ValueError, match="query"):
        rerank.postprocess_nodes(nodes)


def test_openai_like_embedding_over_http_equals_encode(folders, dense):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    with served(folders["dense"], "emb") as server:
        emb = OpenAILikeEmbedding(model_name="emb", api_base=server.url + "/v1", api_key="unused")
        got = np.array(emb.get_text_embedding_batch(DOCS), dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)
        got = np.array(asyncio.run(emb.aget_query_embedding("hello")), dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode("hello", normalize_embeddings=True), atol=1e-6)

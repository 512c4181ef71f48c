"""lightembed.integrations.langchain against the real langchain-core (and langchain-qdrant, langchain-openai):
vectors equal encode(), prompts by role, InMemoryVectorStore and QdrantVectorStore retrieval equal brute force,
the reranker equals CrossEncoder.rank(), and OpenAIEmbeddings talks to `lightembed serve`."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lightembed import CrossEncoder, SparseEncoder
from lightembed.integrations import _shared
from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401 (fixtures)

from langchain_core.documents import Document  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from lightembed.integrations.langchain import LightembedEmbeddings, LightembedReranker  # noqa: E402


def test_vectors_equal_encode_with_the_role_prompts(folders, dense):
    emb = LightembedEmbeddings(model=str(folders["dense"]), batch_size=2)
    docs = np.array(emb.embed_documents(DOCS), dtype=np.float32)
    np.testing.assert_array_equal(docs, dense.encode(DOCS, prompt_name="document", batch_size=2))  # the same batches
    query = np.array(emb.embed_query(QUERIES[0]), dtype=np.float32)
    np.testing.assert_array_equal(query, dense.encode(QUERIES[0], prompt="query "))
    assert not np.allclose(query, dense.encode(QUERIES[0]))  # the prompt changed it


def test_normalize_encode_kwargs_and_async(folders, dense):
    emb = LightembedEmbeddings(model_name=str(folders["dense"]), normalize_embeddings=True,
                               query_encode_kwargs={"prompt": ""})  # fmt: skip
    np.testing.assert_array_equal(
        np.array(asyncio.run(emb.aembed_documents(DOCS[:2])), dtype=np.float32),
        dense.encode(DOCS[:2], prompt="passage ", normalize_embeddings=True),
    )
    np.testing.assert_array_equal(
        np.array(asyncio.run(emb.aembed_query("hello")), dtype=np.float32),
        dense.encode("hello", normalize_embeddings=True),  # prompt "" given: no query prompt
    )


def test_one_model_is_loaded_and_shared(folders):
    a = LightembedEmbeddings(model=str(folders["dense"]))
    b = LightembedEmbeddings(model=str(folders["dense"]), batch_size=4)
    c = LightembedEmbeddings(model=str(folders["dense"]), model_kwargs={"threads": 1})
    assert a.client is b.client
    assert c.client is not a.client


def test_in_memory_vector_store_top1_equals_brute_force(folders, dense):
    store = InMemoryVectorStore(LightembedEmbeddings(model=str(folders["dense"])))
    store.add_texts(DOCS)
    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    for query, want in zip(QUERIES, answers):
        assert store.similarity_search(query, k=1)[0].page_content == DOCS[want]


def test_reranker_equals_cross_encoder_rank(folders):
    ce = CrossEncoder(folders["ce"])
    reranker = LightembedReranker(model=str(folders["ce"]), top_n=3)
    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(DOCS)]
    out = reranker.compress_documents(docs, QUERIES[1])
    want = ce.rank(QUERIES[1], DOCS, top_k=3)
    assert [d.metadata["i"] for d in out] == [r["corpus_id"] for r in want]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([float(r["score"]) for r in want], abs=0)
    assert "relevance_score" not in docs[0].metadata  # copies, the inputs are untouched


def test_sparse_embeddings_in_qdrant_vector_store(folders):
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import QdrantClient, models

    from lightembed.integrations.langchain import LightembedSparseEmbeddings

    splade = SparseEncoder(folders["sparse"])
    sparse = LightembedSparseEmbeddings(model=str(folders["sparse"]))
    vec = sparse.embed_query(QUERIES[0])
    want = splade.encode(QUERIES[0], prompt="query ")
    assert vec.indices == want.indices.tolist()
    assert np.array(vec.values, dtype=np.float32).tolist() == want.values.tolist()
    docs = sparse.embed_documents(DOCS)
    want_docs = splade.encode(DOCS, prompt_name="document")
    assert [d.indices for d in docs] == [r.indices.tolist() for r in want_docs]

    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config={},
                             sparse_vectors_config={"langchain-sparse": models.SparseVectorParams()})  # fmt: skip
    store = QdrantVectorStore(client, "docs", sparse_embedding=sparse, retrieval_mode=RetrievalMode.SPARSE)
    store.add_texts(DOCS)
    doc_rows = splade.encode_document(DOCS)
    checked = 0
    for query in QUERIES:
        scores = splade.similarity(splade.encode_query([query]), doc_rows)[0]
        if np.sort(scores)[-1] == np.sort(scores)[-2]:
            continue  # a tie: either is right
        assert store.similarity_search(query, k=1)[0].page_content == DOCS[int(np.argmax(scores))]
        checked += 1
    assert checked >= 3


def test_missing_langchain_qdrant_names_the_extra(monkeypatch):
    import lightembed.integrations.langchain as lc

    monkeypatch.setitem(__import__("sys").modules, "langchain_qdrant", None)
    monkeypatch.setattr(lc, "_lazy", {})
    with pytest.raises(ImportError, match=r'lightembed\[langchain-qdrant\]'):
        lc.LightembedSparseEmbeddings


def test_openai_embeddings_over_http_equal_encode(folders, dense):
    from langchain_openai import OpenAIEmbeddings

    with served(folders["dense"], "emb") as server:
        emb = OpenAIEmbeddings(model="emb", base_url=server.url + "/v1", api_key="unused",
                               check_embedding_ctx_length=False)  # fmt: skip
        got = np.array(emb.embed_documents(DOCS), dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)
        got = np.array(asyncio.run(emb.aembed_query("hello")), dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode("hello", normalize_embeddings=True), atol=1e-6)


def test_clear_cache_forgets_models(folders):
    a = LightembedEmbeddings(model=str(folders["dense"]))
    _shared.clear_cache()
    assert LightembedEmbeddings(model=str(folders["dense"])).client is not a.client

"""lightembed.integrations.haystack against the real haystack-ai: vectors equal encode(), prompts by role, a saved
and reloaded pipeline with InMemoryDocumentStore + InMemoryEmbeddingRetriever retrieves what brute force does,
sparse embedders equal SparseEncoder, the ranker equals CrossEncoder.rank(), and OpenAI embedders talk to
`lightembed serve`."""

from __future__ import annotations

import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no posthog calls from the tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lightembed import CrossEncoder, SparseEncoder  # noqa: E402
from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401, E402

from haystack import Document, Pipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever  # noqa: E402
from haystack.components.writers import DocumentWriter  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402

from lightembed.integrations.haystack import (  # noqa: E402
    LightembedDocumentEmbedder,
    LightembedRanker,
    LightembedSparseDocumentEmbedder,
    LightembedSparseTextEmbedder,
    LightembedTextEmbedder,
)


def test_warm_up_loads_and_vectors_equal_encode_with_the_role_prompts(folders, dense):
    text = LightembedTextEmbedder(model=str(folders["dense"]), progress_bar=False)
    assert text.client is None
    text.warm_up()
    assert text.client is not None
    got = np.array(text.run(QUERIES[0])["embedding"], dtype=np.float32)
    np.testing.assert_array_equal(got, dense.encode(QUERIES[0], prompt="query "))
    assert not np.allclose(got, dense.encode(QUERIES[0]))

    docs = LightembedDocumentEmbedder(model=str(folders["dense"]), batch_size=2, normalize_embeddings=True,
                                      meta_fields_to_embed=["title"], embedding_separator=" ")  # fmt: skip
    out = docs.run([Document(content=DOCS[0], meta={"title": "hello"}), Document(content=DOCS[1])])["documents"]
    want = dense.encode(["hello " + DOCS[0], DOCS[1]], prompt="passage ", normalize_embeddings=True)
    np.testing.assert_array_equal(np.array([d.embedding for d in out], dtype=np.float32), want)
    assert docs.client is text.client  # one model for both components

    plain = LightembedTextEmbedder(model=str(folders["dense"]), prefix="big ", encode_kwargs={"prompt": ""},
                                   truncate_dim=4)  # fmt: skip
    np.testing.assert_array_equal(
        np.array(plain.run("cat")["embedding"], dtype=np.float32), dense.encode("big cat", truncate_dim=4)
    )


def test_saved_pipeline_loads_and_retrieves_what_brute_force_does(folders, dense):
    store = InMemoryDocumentStore(index="lightembed-haystack-test", embedding_similarity_function="cosine")
    indexing = Pipeline()
    indexing.add_component("embed", LightembedDocumentEmbedder(model=str(folders["dense"]), progress_bar=False))
    indexing.add_component("write", DocumentWriter(document_store=store))
    indexing.connect("embed.documents", "write.documents")
    indexing.run({"embed": {"documents": [Document(content=t) for t in DOCS]}})

    query = Pipeline()
    query.add_component("embed", LightembedTextEmbedder(model=str(folders["dense"]), progress_bar=False))
    query.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store, top_k=1))
    query.connect("embed.embedding", "retrieve.query_embedding")
    saved = query.dumps()
    assert "lightembed.integrations.haystack.LightembedTextEmbedder" in saved
    # haystack-ai 3.4 loads classes only from trusted modules (haystack, haystack_integrations, ...).
    loaded = Pipeline.loads(saved, allowed_modules=["lightembed.integrations.haystack"])
    assert loaded.get_component("embed").to_dict() == query.get_component("embed").to_dict()

    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    for text, want in zip(QUERIES, answers):
        result = loaded.run({"embed": {"text": text}})
        assert result["retrieve"]["documents"][0].content == DOCS[want]


def test_sparse_embedders_equal_sparse_encoder(folders):
    splade = SparseEncoder(folders["sparse"])
    text = LightembedSparseTextEmbedder(model=str(folders["sparse"]))
    got = text.run(QUERIES[0])["sparse_embedding"]
    want = splade.encode(QUERIES[0], prompt="query ")
    assert got.indices == want.indices.tolist() and got.values == want.values.tolist()

    docs = LightembedSparseDocumentEmbedder(model=str(folders["sparse"]), progress_bar=False)
    out = docs.run([Document(content=t) for t in DOCS])["documents"]
    want_docs = splade.encode(DOCS, prompt_name="document")
    assert [d.sparse_embedding.indices for d in out] == [r.indices.tolist() for r in want_docs]
    assert [d.sparse_embedding.values for d in out] == [r.values.tolist() for r in want_docs]
    restored = LightembedSparseDocumentEmbedder.from_dict(docs.to_dict())
    assert restored.to_dict() == docs.to_dict()


def test_ranker_equals_cross_encoder_rank(folders):
    from lightembed.activations import Identity

    ce = CrossEncoder(folders["ce"])
    ranker = LightembedRanker(model=str(folders["ce"]), top_k=3)
    docs = [Document(content=t, id=str(i)) for i, t in enumerate(DOCS)]
    out = ranker.run(query=QUERIES[1], documents=docs)["documents"]
    want = ce.rank(QUERIES[1], DOCS, top_k=3)  # this one-label model's default activation is the sigmoid
    assert [d.id for d in out] == [str(r["corpus_id"]) for r in want]
    assert [d.score for d in out] == [float(r["score"]) for r in want]

    raw = ranker.run(query=QUERIES[1], documents=docs, scale_score=False, top_k=6)["documents"]
    want_raw = ce.rank(QUERIES[1], DOCS, activation_fn=Identity())
    assert [d.score for d in raw] == [float(r["score"]) for r in want_raw]
    threshold = float(want_raw[2]["score"])
    kept = ranker.run(query=QUERIES[1], documents=docs, scale_score=False, score_threshold=threshold)["documents"]
    assert len(kept) == 3
    assert LightembedRanker.from_dict(ranker.to_dict()).to_dict() == ranker.to_dict()
    with pytest.raises(ValueError, match="top_k"):
        ranker.run(query="q", documents=docs, top_k=0)


def test_documents_must_be_documents(folders):
    with pytest.raises(TypeError, match="Documents"):
        LightembedDocumentEmbedder(model=str(folders["dense"])).run(["a string"])
    with pytest.raises(TypeError, match="string"):
        LightembedTextEmbedder(model=str(folders["dense"])).run([Document(content="x")])


def test_openai_embedders_over_http_equal_encode(folders, dense):
    from haystack.components.embedders import OpenAIDocumentEmbedder, OpenAITextEmbedder
    from haystack.utils import Secret

    with served(folders["dense"], "emb") as server:
        key, base = Secret.from_token("unused"), server.url + "/v1"
        text = OpenAITextEmbedder(api_key=key, model="emb", api_base_url=base)
        got = np.array(text.run("hello")["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode("hello", normalize_embeddings=True), atol=1e-6)
        docs = OpenAIDocumentEmbedder(api_key=key, model="emb", api_base_url=base, progress_bar=False)
        out = docs.run([Document(content=t) for t in DOCS])["documents"]
        got = np.array([d.embedding for d in out], dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)

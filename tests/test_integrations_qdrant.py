"""lightembed.integrations.qdrant against the real qdrant-client in its in-memory mode: PointStructs carry
encode()'s dense vector and SparseEncoder's sparse one, dense and sparse search equal brute force, and the hybrid
search equals reciprocal rank fusion of the brute-force rankings. Qdrant has no HTTP embedding client of its own
(its inference runs fastembed or Qdrant Cloud), so over HTTP the openai client's vectors go into the points."""

from __future__ import annotations

import numpy as np
import pytest

from lightembed import SentenceTransformer, SparseEncoder
from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401 (fixtures)

from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.hybrid.fusion import DEFAULT_RANKING_CONSTANT_K  # noqa: E402

from lightembed.integrations.qdrant import QdrantEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def models_(folders):
    return SentenceTransformer(folders["dense"]), SparseEncoder(folders["sparse"])


@pytest.fixture(scope="module")
def filled(folders):
    embedder = QdrantEmbedder(dense=str(folders["dense"]), sparse=str(folders["sparse"]), batch_size=2)
    client = QdrantClient(":memory:")
    embedder.create_collection(client, "docs")
    client.upsert("docs", embedder.points(DOCS))
    return embedder, client


def test_points_carry_encode_vectors_with_the_role_prompts(filled, models_):
    embedder, _ = filled
    dense, splade = models_
    points = embedder.points(DOCS[:2], ids=[10, 11], payloads=[{"k": 1}, {"k": 2}])
    assert [p.id for p in points] == [10, 11] and points[1].payload == {"k": 2}
    want = dense.encode(DOCS[:2], prompt="passage ", normalize_embeddings=True)
    np.testing.assert_array_equal(np.array([p.vector["dense"] for p in points], dtype=np.float32), want)
    sparse_want = splade.encode(DOCS[:2], prompt_name="document")
    for point, row in zip(points, sparse_want):
        assert isinstance(point.vector["sparse"], models.SparseVector)
        assert point.vector["sparse"].indices == row.indices.tolist()
        assert point.vector["sparse"].values == row.values.tolist()
    query = embedder.query_vectors(QUERIES[0])
    np.testing.assert_array_equal(np.array(query["dense"], dtype=np.float32),
                                  dense.encode(QUERIES[0], prompt="query ", normalize_embeddings=True))  # fmt: skip
    assert query["sparse"].indices == splade.encode(QUERIES[0], prompt="query ").indices.tolist()
    with pytest.raises(ValueError, match="ids"):
        embedder.points(DOCS[:2], ids=[1])
    with pytest.raises(ValueError, match="dense model"):
        QdrantEmbedder()


def test_dense_and_sparse_search_equal_brute_force(filled, models_):
    embedder, client = filled
    dense, splade = models_
    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    doc_rows = splade.encode_document(DOCS)
    checked = 0
    for query, want in zip(QUERIES, answers):
        assert embedder.search(client, "docs", query, limit=1, using="dense")[0].payload["text"] == DOCS[want]
        scores = splade.similarity(splade.encode_query([query]), doc_rows)[0]
        if np.sort(scores)[-1] != np.sort(scores)[-2]:
            top = embedder.search(client, "docs", query, limit=1, using="sparse")[0]
            assert top.payload["text"] == DOCS[int(np.argmax(scores))]
            checked += 1
    assert checked >= 3


def rrf_top(rankings: list[list[int]]) -> list[tuple[float, int]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for pos, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (pos + DEFAULT_RANKING_CONSTANT_K)
    return sorted(((s, d) for d, s in scores.items()), reverse=True)


def test_hybrid_search_equals_reciprocal_rank_fusion(filled, models_):
    embedder, client = filled
    dense, splade = models_
    d_docs = dense.encode_document(DOCS, normalize_embeddings=True)
    s_docs = splade.encode_document(DOCS)
    checked = 0
    for query in QUERIES:
        d_scores = d_docs @ dense.encode_query(query, normalize_embeddings=True)
        s_scores = splade.similarity(splade.encode_query([query]), s_docs)[0]
        hits = [i for i in range(len(DOCS)) if s_scores[i] > 0]  # sparse search returns overlapping points only
        if len(set(d_scores.tolist())) < len(DOCS) or len(set(s_scores[hits].tolist())) < len(hits):
            continue  # a tie in a ranking: its order is Qdrant's choice
        fused = rrf_top([list(np.argsort(-d_scores)), sorted(hits, key=lambda i: -s_scores[i])])
        if len(fused) > 1 and fused[0][0] == fused[1][0]:
            continue
        got = embedder.search(client, "docs", query, limit=3)
        assert got[0].payload["text"] == DOCS[fused[0][1]]
        assert got[0].score == pytest.approx(fused[0][0])  # Qdrant's score is the fused one
        checked += 1
    assert checked >= 2


def test_openai_client_vectors_over_http_in_points(folders, models_):
    import openai

    dense, _ = models_
    with served(folders["dense"], "emb") as server:
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
        vectors = [d.embedding for d in api.embeddings.create(model="emb", input=DOCS).data]
        client = QdrantClient(":memory:")
        params = models.VectorParams(size=len(vectors[0]), distance=models.Distance.COSINE)
        client.create_collection("http", vectors_config=params)
        client.upsert("http", [models.PointStruct(id=i, vector=v, payload={"text": t})
                               for i, (v, t) in enumerate(zip(vectors, DOCS))])  # fmt: skip
        np.testing.assert_allclose(np.array(vectors, dtype=np.float32),
                                   dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)  # fmt: skip
        query = api.embeddings.create(model="emb", input=QUERIES[1]).data[0].embedding
        top = client.query_points("http", query=query, limit=1).points[0]
        d = dense.encode(DOCS, normalize_embeddings=True)
        assert top.payload["text"] == DOCS[int(np.argmax(d @ dense.encode(QUERIES[1], normalize_embeddings=True)))]

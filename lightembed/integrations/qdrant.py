"""Qdrant: dense and sparse (SPLADE) vectors from lightembed models in `qdrant_client.models` shapes, and a hybrid
search that fuses both (the `qdrant` extra).

    from qdrant_client import QdrantClient
    from lightembed.integrations.qdrant import QdrantEmbedder

    embedder = QdrantEmbedder(dense="path/to/model", sparse="path/to/splade")
    client = QdrantClient(":memory:")                     # or QdrantClient(url=...)
    embedder.create_collection(client, "docs")            # named vectors "dense" (cosine) and "sparse"
    client.upsert("docs", embedder.points(texts))         # PointStructs with both vectors, payload {"text": ...}
    hits = embedder.search(client, "docs", "a query", limit=5)   # dense + sparse prefetch, fused by RRF

Documents get each model's "document"/"passage" prompt and queries its "query" prompt. This is what
fastembed-backed `client.add()`/`client.query()` do for a Qdrant user, with the vectors computed here instead;
the collection is an ordinary one, so any Qdrant client can query it with vectors of its own.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from lightembed.integrations import _shared

_shared.require("qdrant_client", "qdrant", "lightembed.integrations.qdrant")

from qdrant_client import models  # noqa: E402

from lightembed.errors import LightembedValueError

__all__ = ["QdrantEmbedder"]


class QdrantEmbedder:
    """Embeds texts for a Qdrant collection with named vectors: `dense_name` from a lightembed
    SentenceTransformer, `sparse_name` from a SparseEncoder (either may be left out)."""

    def __init__(
        self,
        dense: Any = None,
        sparse: Any = None,
        *,
        dense_name: str = "dense",
        sparse_name: str = "sparse",
        device: str | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = True,
        distance: models.Distance = models.Distance.COSINE,
        model_kwargs: Mapping[str, Any] | None = None,
        sparse_model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if dense is None and sparse is None:
            raise LightembedValueError("QdrantEmbedder needs a dense model, a sparse model or both.")
        self.dense = None if dense is None else _shared.load_model(
            "SentenceTransformer", dense, device=device, model_kwargs=model_kwargs
        )  # fmt: skip
        self.sparse = None if sparse is None else _shared.load_model(
            "SparseEncoder", sparse, device=device, model_kwargs=sparse_model_kwargs
        )  # fmt: skip
        self.dense_name, self.sparse_name = dense_name, sparse_name
        self.batch_size, self.normalize_embeddings, self.distance = batch_size, normalize_embeddings, distance

    # ----- collection ---------------------------------------------------------------------------------------
    def vectors_config(self) -> dict[str, models.VectorParams]:
        """The dense vector's size and distance, for create_collection(vectors_config=...)."""
        if self.dense is None:
            return {}
        return {self.dense_name: models.VectorParams(size=self.dense.get_sentence_embedding_dimension(),
                                                     distance=self.distance)}  # fmt: skip

    def sparse_vectors_config(self) -> dict[str, models.SparseVectorParams]:
        """The sparse vector, for create_collection(sparse_vectors_config=...); SPLADE weights need no IDF."""
        return {} if self.sparse is None else {self.sparse_name: models.SparseVectorParams()}

    def create_collection(self, client: Any, collection_name: str, **kwargs: Any) -> None:
        """Create `collection_name` with this embedder's named vectors (kwargs go to client.create_collection)."""
        client.create_collection(collection_name, vectors_config=self.vectors_config(),
                                 sparse_vectors_config=self.sparse_vectors_config(), **kwargs)  # fmt: skip

    # ----- vectors ------------------------------------------------------------------------------------------
    def _vectors(self, texts: Sequence[str], role: _shared.Role) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{} for _ in texts]
        if self.dense is not None:
            dense = _shared.embed(self.dense, texts, role, batch_size=self.batch_size,
                                  normalize_embeddings=self.normalize_embeddings)  # fmt: skip
            for row, vec in zip(rows, dense):
                row[self.dense_name] = vec.tolist()
        if self.sparse is not None:
            for row, (indices, values) in zip(rows, _shared.embed_sparse(self.sparse, texts, role,
                                                                         batch_size=self.batch_size)):  # fmt: skip
                row[self.sparse_name] = models.SparseVector(indices=indices, values=values)
        return rows

    def document_vectors(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Each text's named vectors ({dense_name: list[float], sparse_name: models.SparseVector}), as documents."""
        return self._vectors(texts, "document")

    def query_vectors(self, query: str) -> dict[str, Any]:
        """A query's named vectors, with the models' query prompts."""
        return self._vectors([query], "query")[0]

    def points(
        self,
        texts: Sequence[str],
        ids: Sequence[int | str] | None = None,
        payloads: Sequence[dict[str, Any]] | None = None,
    ) -> list[models.PointStruct]:
        """PointStructs for client.upsert(): ids 0..n-1 unless given, payload {"text": text} unless given."""
        texts = list(texts)
        ids = list(range(len(texts))) if ids is None else list(ids)
        payloads = [{"text": t} for t in texts] if payloads is None else list(payloads)
        if not len(ids) == len(payloads) == len(texts):
            raise LightembedValueError(f"{len(texts)} texts, {len(ids)} ids and {len(payloads)} payloads: give one of each.")
        return [models.PointStruct(id=i, vector=v, payload=p)
                for i, v, p in zip(ids, self.document_vectors(texts), payloads)]  # fmt: skip

    # ----- search -------------------------------------------------------------------------------------------
    def search(
        self,
        client: Any,
        collection_name: str,
        query: str,
        *,
        limit: int = 10,
        prefetch_limit: int | None = None,
        using: str | None = None,
        **kwargs: Any,
    ) -> list[models.ScoredPoint]:
        """The best `limit` points for `query`: with both models, dense and sparse candidates (`prefetch_limit`
        each, default 4 x limit) fused by reciprocal rank; with one model, or `using=` a vector name, that one
        alone. kwargs go to client.query_points (query_filter, with_payload, ...)."""
        vectors = self.query_vectors(query)
        if using is not None or len(vectors) == 1:
            name = using if using is not None else next(iter(vectors))
            if name not in vectors:
                raise LightembedValueError(f"using={name!r}: this embedder's vectors are {sorted(vectors)}.")
            return client.query_points(collection_name, query=vectors[name], using=name, limit=limit,
                                       **kwargs).points  # fmt: skip
        per_branch = prefetch_limit or 4 * limit
        prefetch = [models.Prefetch(query=vec, using=name, limit=per_branch) for name, vec in vectors.items()]
        fused = models.FusionQuery(fusion=models.Fusion.RRF)
        return client.query_points(collection_name, prefetch=prefetch, query=fused, limit=limit, **kwargs).points

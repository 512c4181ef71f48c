"""Chroma: a lightembed SentenceTransformer as an `EmbeddingFunction` and a SparseEncoder as a
`SparseEmbeddingFunction` (the `chroma` extra), registered under the names "lightembed" and "lightembed_sparse" so
that a collection persisted with them opens again with its function rebuilt from the stored config.

    import chromadb
    from lightembed.integrations.chroma import LightembedEmbeddingFunction

    client = chromadb.EphemeralClient()
    docs = client.create_collection("docs", embedding_function=LightembedEmbeddingFunction("path/to/model"),
                                    configuration={"hnsw": {"space": "cosine"}})

The arguments are those of Chroma's `SentenceTransformerEmbeddingFunction` (`model_name`, `device`,
`normalize_embeddings`, other keyword arguments for the model's constructor, which must be JSON values as Chroma
stores them) plus `batch_size`. Documents get the model's "document"/"passage" prompt and queries
(`collection.query(query_texts=...)`, which calls `embed_query`) its "query" prompt; Chroma's own
sentence-transformers function embeds both alike. Sparse vectors are for Chroma's distributed and cloud
servers: the local (Ephemeral/Persistent) client refuses a sparse vector index ("Sparse vector indexing is not
enabled in local", chromadb 1.5).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from lightembed.integrations import _shared

_shared.require("chromadb", "chroma", "lightembed.integrations.chroma")

import numpy as np  # noqa: E402
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space, SparseEmbeddingFunction, SparseVectors  # noqa: E402  # noqa: E402
from chromadb.base_types import SparseVector  # noqa: E402
from chromadb.utils.embedding_functions import (  # noqa: E402
    register_embedding_function,
    register_sparse_embedding_function,
)

from lightembed.errors import LightembedValueError

__all__ = ["LightembedEmbeddingFunction", "LightembedSparseEmbeddingFunction"]


class _Persisted:
    """The config Chroma stores with a collection, and the function rebuilt from it."""

    _kind: _shared.ModelKind = "SentenceTransformer"

    def _setup(self, model_name: str, device: str | None, config: Dict[str, Any], kwargs: Dict[str, Any]) -> None:
        for key, value in kwargs.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise LightembedValueError(
                    f"Keyword argument {key}={value!r} is not a JSON value, which Chroma must store."
                ) from None
        self.model_name = str(model_name)
        self.device = device
        self.kwargs = dict(kwargs)
        self._config = {"model_name": self.model_name, "device": device, **config, "kwargs": self.kwargs}
        self._model = _shared.load_model(self._kind, self.model_name, device=device, model_kwargs=self.kwargs)

    def get_config(self) -> Dict[str, Any]:
        """What Chroma persists with the collection."""
        return dict(self._config)

    @classmethod
    def build_from_config(cls, config: Dict[str, Any]) -> Any:
        """The function a persisted config describes."""
        config = dict(config)
        kwargs = config.pop("kwargs", None) or {}
        return cls(**config, **kwargs)

    def _embed(self, input: Documents, role: _shared.Role) -> Any:
        raise NotImplementedError

    def __call__(self, input: Documents) -> Any:
        """Embed documents (with the model's document prompt, if it has one)."""
        return self._embed(input, "document")

    def embed_query(self, input: Documents) -> Any:
        """Embed queries: `collection.query(query_texts=...)` calls this (with the model's query prompt)."""
        return self._embed(input, "query")

    def validate_config_update(self, old_config: Dict[str, Any], new_config: Dict[str, Any]) -> None:
        # A moved model folder is the same model; only the model's name changing would be a different space.
        return


@register_embedding_function
class LightembedEmbeddingFunction(_Persisted, EmbeddingFunction[Documents]):
    """Dense embeddings (float32 arrays) from a lightembed SentenceTransformer."""

    def __init__(
        self,
        model_name: str,
        device: str | None = None,
        normalize_embeddings: bool = False,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        self.normalize_embeddings = normalize_embeddings
        self.batch_size = batch_size
        self._setup(model_name, device, {"normalize_embeddings": normalize_embeddings, "batch_size": batch_size},
                    kwargs)  # fmt: skip

    def _embed(self, input: Documents, role: _shared.Role) -> Embeddings:
        vectors = _shared.embed(self._model, list(input), role, batch_size=self.batch_size,
                                normalize_embeddings=self.normalize_embeddings)  # fmt: skip
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    @staticmethod
    def name() -> str:
        return "lightembed"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> List[Space]:
        return ["cosine", "l2", "ip"]


@register_sparse_embedding_function
class LightembedSparseEmbeddingFunction(_Persisted, SparseEmbeddingFunction[Documents]):
    """SPLADE vectors (Chroma `SparseVector`s) from a lightembed SparseEncoder."""

    _kind = "SparseEncoder"

    def __init__(self, model_name: str, device: str | None = None, batch_size: int = 32, **kwargs: Any) -> None:
        self.batch_size = batch_size
        self._setup(model_name, device, {"batch_size": batch_size}, kwargs)

    def _embed(self, input: Documents, role: _shared.Role) -> SparseVectors:
        rows = _shared.embed_sparse(self._model, list(input), role, batch_size=self.batch_size)
        return [SparseVector(indices=indices, values=values) for indices, values in rows]

    @staticmethod
    def name() -> str:
        return "lightembed_sparse"

"""Haystack: lightembed models as Haystack components (the `haystack` extra): text and document embedders, sparse
(SPLADE) text and document embedders, and a CrossEncoder ranker.

    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from lightembed.integrations.haystack import LightembedTextEmbedder

    pipe = Pipeline()
    pipe.add_component("embed", LightembedTextEmbedder(model="path/to/model"))
    pipe.add_component("retrieve", InMemoryEmbeddingRetriever(document_store=store))
    pipe.connect("embed.embedding", "retrieve.query_embedding")

They take the arguments of sentence-transformers-haystack's `SentenceTransformers*Embedder` and
`SentenceTransformersSimilarityRanker` that mean something for an ONNX model (`model`, `device` as a string,
`prefix`/`suffix`, `batch_size`, `progress_bar`, `normalize_embeddings`, `truncate_dim`, `meta_fields_to_embed`,
`embedding_separator`, `model_kwargs` for the constructor, `encode_kwargs`; the ranker's `top_k`, query/document
prefixes, `scale_score`, `score_threshold`), give the same outputs, serialize with `to_dict`/`from_dict` (so a
saved pipeline loads) and load the model in `warm_up()` (once per process for the same folder and options).
One difference: the text embedders apply the model's "query" prompt and the document embedders its
"document"/"passage" prompt (sentence-transformers' encode_query/encode_document), before `prefix`; pass
`encode_kwargs={"prompt": ""}` for none.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lightembed.integrations import _shared

_shared.require("haystack", "haystack", "lightembed.integrations.haystack")

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.dataclasses import SparseEmbedding  # noqa: E402

from lightembed.errors import LightembedTypeError, LightembedValueError

__all__ = [
    "LightembedDocumentEmbedder",
    "LightembedRanker",
    "LightembedSparseDocumentEmbedder",
    "LightembedSparseTextEmbedder",
    "LightembedTextEmbedder",
]


class _Component:
    """Init parameters kept for to_dict(), the model loaded in warm_up()."""

    _kind: _shared.ModelKind = "SentenceTransformer"

    def _remember(self, params: dict[str, Any]) -> None:
        self._init_parameters = {k: v for k, v in params.items() if k not in ("self", "__class__")}
        self._model: Any = None

    @property
    def client(self) -> Any:
        """The loaded lightembed model, or None before warm_up()."""
        return self._model

    def warm_up(self) -> None:
        """Load the model (shared with every component that loads the same folder and options)."""
        if self._model is None:
            params = self._init_parameters
            self._model = _shared.load_model(
                self._kind, params["model"], device=params["device"], model_kwargs=params["model_kwargs"]
            )

    def _loaded(self) -> Any:
        if self._model is None:
            self.warm_up()
        return self._model

    def _encode(self, texts: list[str], role: _shared.Role) -> list[Any]:
        """Dense vectors (lists of floats) or SparseEmbeddings of `texts`, with the init parameters' options."""
        p = self._init_parameters
        options: dict[str, Any] = {"batch_size": p["batch_size"], "show_progress_bar": p["progress_bar"]}
        if self._kind == "SparseEncoder":
            rows = _shared.embed_sparse(self._loaded(), texts, role, **options, **(p["encode_kwargs"] or {}))
            return [SparseEmbedding(indices=indices, values=values) for indices, values in rows]
        options.update(normalize_embeddings=p["normalize_embeddings"], truncate_dim=p["truncate_dim"])
        return _shared.embed(self._loaded(), texts, role, **{**options, **(p["encode_kwargs"] or {})}).tolist()

    def _text(self, text: Any) -> list[str]:
        if not isinstance(text, str):
            raise LightembedTypeError(f"{type(self).__name__} expects a string; embed Documents with a document embedder.")
        return [self._init_parameters["prefix"] + text + self._init_parameters["suffix"]]

    def _texts_of(self, documents: Any) -> list[str]:
        p = self._init_parameters
        return _document_texts(documents, p["prefix"], p["suffix"], p["meta_fields_to_embed"] or [],
                               p["embedding_separator"])  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The component as Haystack serializes it (type and init parameters)."""
        return default_to_dict(self, **self._init_parameters)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """The component that `to_dict()` described."""
        return default_from_dict(cls, data)


def _document_texts(documents: Any, prefix: str, suffix: str, meta_fields: list[str], separator: str) -> list[str]:
    if not isinstance(documents, list) or any(not isinstance(d, Document) for d in documents):
        raise LightembedTypeError("documents must be a list of haystack Documents; embed a string with a text embedder.")
    texts = []
    for doc in documents:
        meta = [str(doc.meta[k]) for k in meta_fields if doc.meta.get(k) is not None]
        texts.append(prefix + separator.join([*meta, doc.content or ""]) + suffix)
    return texts


@component
class LightembedTextEmbedder(_Component):
    """Embeds a string (a query) with a lightembed SentenceTransformer: `{"embedding": list[float]}`."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        encode_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._remember(locals())

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, Any]:
        """The embedding of `text`, with the model's query prompt."""
        return {"embedding": self._encode(self._text(text), "query")[0]}


@component
class LightembedDocumentEmbedder(_Component):
    """Embeds Documents with a lightembed SentenceTransformer: copies with `embedding` set."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        model_kwargs: dict[str, Any] | None = None,
        encode_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._remember(locals())

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """The documents with their embeddings (of the meta fields and content), with the model's document prompt."""
        vectors = self._encode(self._texts_of(documents), "document")
        return {"documents": [replace(doc, embedding=vec) for doc, vec in zip(documents, vectors)]}


@component
class LightembedSparseTextEmbedder(_Component):
    """Embeds a string (a query) with a lightembed SparseEncoder: `{"sparse_embedding": SparseEmbedding}`."""

    _kind = "SparseEncoder"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        encode_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._remember(locals())

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, Any]:
        """The sparse embedding of `text`, with the model's query prompt."""
        return {"sparse_embedding": self._encode(self._text(text), "query")[0]}


@component
class LightembedSparseDocumentEmbedder(_Component):
    """Embeds Documents with a lightembed SparseEncoder: copies with `sparse_embedding` set."""

    _kind = "SparseEncoder"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        model_kwargs: dict[str, Any] | None = None,
        encode_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._remember(locals())

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """The documents with their sparse embeddings, with the model's document prompt."""
        vectors = self._encode(self._texts_of(documents), "document")
        return {"documents": [replace(doc, sparse_embedding=vec) for doc, vec in zip(documents, vectors)]}


@component
class LightembedRanker(_Component):
    """Ranks Documents by a lightembed CrossEncoder's score for the query: copies with `score` set, best first
    (sigmoid of the logit when `scale_score`, the raw logit otherwise), the `top_k` at or above `score_threshold`."""

    _kind = "CrossEncoder"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        top_k: int = 10,
        query_prefix: str = "",
        query_suffix: str = "",
        document_prefix: str = "",
        document_suffix: str = "",
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        scale_score: bool = True,
        score_threshold: float | None = None,
        batch_size: int = 16,
        progress_bar: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if top_k <= 0:
            raise LightembedValueError(f"top_k must be > 0, got {top_k}.")
        self._remember(locals())

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """The documents most relevant to `query`, best first; the arguments override the init ones."""
        from lightembed.activations import Identity, Sigmoid

        p = self._init_parameters
        top_k = p["top_k"] if top_k is None else top_k
        if top_k <= 0:
            raise LightembedValueError(f"top_k must be > 0, got {top_k}.")
        scale_score = p["scale_score"] if scale_score is None else scale_score
        score_threshold = p["score_threshold"] if score_threshold is None else score_threshold
        if not isinstance(query, str):
            raise LightembedTypeError(f"query must be a string, got {type(query).__name__}.")
        if not documents:
            return {"documents": []}
        texts = _document_texts(documents, p["document_prefix"], p["document_suffix"],
                                p["meta_fields_to_embed"] or [], p["embedding_separator"])  # fmt: skip
        ranked = _shared.rerank(
            self._loaded(), p["query_prefix"] + query + p["query_suffix"], texts,
            batch_size=p["batch_size"], show_progress_bar=p["progress_bar"],
            activation_fn=Sigmoid() if scale_score else Identity(),
        )  # fmt: skip
        docs = [replace(documents[i], score=score) for i, score in ranked]
        if score_threshold is not None:
            docs = [d for d in docs if d.score is not None and d.score >= score_threshold]
        return {"documents": docs[:top_k]}

"""LangChain: lightembed models as an `Embeddings`, a langchain-qdrant `SparseEmbeddings` and a document
compressor that reranks with a CrossEncoder (the `langchain` extra; the sparse class also needs langchain-qdrant).

    from lightembed.integrations.langchain import LightembedEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(LightembedEmbeddings(model="path/to/model"))

They take the arguments of langchain-huggingface's `HuggingFaceEmbeddings` (`model`/`model_name`,
`model_kwargs`, `encode_kwargs`, `query_encode_kwargs`, `show_progress`) plus `batch_size` and
`normalize_embeddings`, and differ in one way: queries get the model's "query" prompt and documents its
"document"/"passage" prompt (sentence-transformers' encode_query/encode_document), as a model with prompts
expects, unless `encode_kwargs`/`query_encode_kwargs` name a `prompt` or `prompt_name`. Texts are embedded as
given (HuggingFaceEmbeddings replaces newlines with spaces first), so the vectors are exactly encode()'s. The
async methods are LangChain's defaults, which run the sync ones in an executor (the ONNX run releases the GIL).
"""

from __future__ import annotations

from typing import Any, Sequence

from lightembed.integrations import _shared

_shared.require("langchain_core", "langchain", "lightembed.integrations.langchain")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr  # noqa: E402

__all__ = ["LightembedEmbeddings", "LightembedReranker", "LightembedSparseEmbeddings"]


class _ModelFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model_name: str = Field(alias="model")
    """A model folder (as `lightembed-export` writes it), an .onnx file or a Hub id."""
    device: str | None = None
    """"cpu", "cuda" or None (lightembed's default)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the lightembed model's constructor (file_name, threads, backend, ...)."""
    batch_size: int = 32
    show_progress: bool = False
    _client: Any = PrivateAttr(default=None)

    def _load(self, kind: _shared.ModelKind) -> None:
        self._client = _shared.load_model(kind, self.model_name, device=self.device, model_kwargs=self.model_kwargs)

    @property
    def client(self) -> Any:
        """The loaded lightembed model (shared with every adapter that loads the same folder and options)."""
        return self._client


class LightembedEmbeddings(_ModelFields, Embeddings):
    """Dense embeddings from a lightembed SentenceTransformer."""

    normalize_embeddings: bool = False
    encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More encode() arguments for documents (prompt, prompt_name, truncate_dim, precision, ...)."""
    query_encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """encode() arguments for queries; when empty, `encode_kwargs` are used for queries too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._load("SentenceTransformer")

    def _embed(self, texts: list[str], role: _shared.Role, encode_kwargs: dict[str, Any]) -> list[list[float]]:
        options = {"batch_size": self.batch_size, "normalize_embeddings": self.normalize_embeddings,
                   "show_progress_bar": self.show_progress, **encode_kwargs}  # fmt: skip
        return _shared.embed(self._client, texts, role, **options).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (with the model's document prompt, if it has one)."""
        return self._embed(texts, "document", self.encode_kwargs)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (with the model's query prompt, if it has one)."""
        return self._embed([text], "query", self.query_encode_kwargs or self.encode_kwargs)[0]


class LightembedReranker(_ModelFields, BaseDocumentCompressor):
    """Reorders documents by a lightembed CrossEncoder's score for the query and keeps the best `top_n`, like
    LangChain's CrossEncoderReranker; each returned document is a copy with `metadata["relevance_score"]`."""

    top_n: int = 3

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._load("CrossEncoder")

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The `top_n` documents most relevant to `query`, best first."""
        ranked = _shared.rerank(
            self._client, query, [d.page_content for d in documents], top_k=self.top_n,
            batch_size=self.batch_size, show_progress_bar=self.show_progress,
        )  # fmt: skip
        out = []
        for index, score in ranked:
            doc = documents[index]
            out.append(doc.model_copy(update={"metadata": {**doc.metadata, "relevance_score": score}}))
        return out


def _sparse_class() -> type:
    qdrant = _shared.require(
        "langchain_qdrant", "langchain-qdrant", "lightembed.integrations.langchain.LightembedSparseEmbeddings"
    )

    class LightembedSparseEmbeddings(_ModelFields, qdrant.SparseEmbeddings):  # type: ignore[name-defined]  # imported above, at call time
        """SPLADE vectors from a lightembed SparseEncoder in langchain-qdrant's `SparseVector` shape, for
        `QdrantVectorStore(..., sparse_embedding=..., retrieval_mode=RetrievalMode.SPARSE or HYBRID)`."""

        encode_kwargs: dict[str, Any] = Field(default_factory=dict)
        query_encode_kwargs: dict[str, Any] = Field(default_factory=dict)

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._load("SparseEncoder")

        def _embed(self, texts: list[str], role: _shared.Role, encode_kwargs: dict[str, Any]) -> list[Any]:
            options = {"batch_size": self.batch_size, "show_progress_bar": self.show_progress, **encode_kwargs}
            rows = _shared.embed_sparse(self._client, texts, role, **options)
            return [qdrant.SparseVector(indices=indices, values=values) for indices, values in rows]

        def embed_documents(self, texts: list[str]) -> list[Any]:
            """Sparse vectors of documents (with the model's document prompt, if it has one)."""
            return self._embed(texts, "document", self.encode_kwargs)

        def embed_query(self, text: str) -> Any:
            """The sparse vector of a query (with the model's query prompt, if it has one)."""
            return self._embed([text], "query", self.query_encode_kwargs or self.encode_kwargs)[0]

    LightembedSparseEmbeddings.__module__ = __name__
    return LightembedSparseEmbeddings


_lazy: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    # The sparse class subclasses langchain-qdrant's interface, so it is built (and langchain-qdrant imported)
    # only when it is asked for: the dense and rerank classes need langchain-core alone.
    if name == "LightembedSparseEmbeddings":
        if name not in _lazy:
            _lazy[name] = _sparse_class()
        return _lazy[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""LlamaIndex: a lightembed SentenceTransformer as a `BaseEmbedding` and a CrossEncoder as a node postprocessor
that reranks (the `llama-index` extra).

    from lightembed.integrations.llama_index import LightembedEmbedding
    from llama_index.core import Settings

    Settings.embed_model = LightembedEmbedding(model_name="path/to/model")

They take the arguments of llama-index-embeddings-huggingface's `HuggingFaceEmbedding` and
`SentenceTransformerRerank` that mean something here: `model_name`, `device`, `normalize` (True by default, as
there), `query_instruction`/`text_instruction` (a prompt put before queries/texts; when None, the model's own
"query" and "document"/"passage" prompts), `embed_batch_size` (LlamaIndex's batching; each batch is one encode()
call), `show_progress_bar` and `model_kwargs` for the model's constructor. The async methods run the model in a
worker thread, so an event loop is not blocked while it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional

from lightembed.integrations import _shared

_shared.require("llama_index.core", "llama-index", "lightembed.integrations.llama_index")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402

from lightembed.errors import LightembedValueError

__all__ = ["LightembedEmbedding", "LightembedRerank"]

Embedding = List[float]


class LightembedEmbedding(BaseEmbedding):
    """Dense embeddings from a lightembed SentenceTransformer (a folder, an .onnx file or a Hub id)."""

    device: Optional[str] = Field(default=None, description='"cpu", "cuda" or None (lightembed\'s default).')
    normalize: bool = Field(default=True, description="L2-normalize the embeddings.")
    query_instruction: Optional[str] = Field(
        default=None, description="Prompt put before queries (None: the model's 'query' prompt, if any)."
    )
    text_instruction: Optional[str] = Field(
        default=None, description="Prompt put before texts (None: the model's 'document' prompt, if any)."
    )
    show_progress_bar: bool = Field(default=False, description="Show encode()'s progress bar.")
    model_kwargs: dict = Field(default_factory=dict, description="Arguments for the model's constructor.")
    _model: Any = PrivateAttr()

    def __init__(self, model_name: str, **kwargs: Any) -> None:
        super().__init__(model_name=str(model_name), **kwargs)
        self._model = _shared.load_model(
            "SentenceTransformer", self.model_name, device=self.device, model_kwargs=self.model_kwargs
        )

    @classmethod
    def class_name(cls) -> str:
        return "LightembedEmbedding"

    @property
    def client(self) -> Any:
        """The loaded lightembed model (shared with every adapter that loads the same folder and options)."""
        return self._model

    def _embed(self, texts: List[str], role: _shared.Role) -> List[Embedding]:
        prompt = self.query_instruction if role == "query" else self.text_instruction
        return _shared.embed(
            self._model, texts, role, batch_size=self.embed_batch_size, normalize_embeddings=self.normalize,
            show_progress_bar=self.show_progress_bar, prompt=prompt,
        ).tolist()  # fmt: skip

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query], "query")[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text], "document")[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return self._embed(texts, "document")

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class LightembedRerank(BaseNodePostprocessor):
    """Rescores nodes with a lightembed CrossEncoder and keeps the best `top_n`, like SentenceTransformerRerank
    (`keep_retrieval_score` keeps the retriever's score in `metadata["retrieval_score"]`)."""

    model: str = Field(description="A CrossEncoder folder, .onnx file or Hub id.")
    top_n: int = Field(default=2, description="Number of nodes to return, best first.")
    device: Optional[str] = Field(default=None)
    keep_retrieval_score: bool = Field(default=False)
    batch_size: int = Field(default=32)
    show_progress_bar: bool = Field(default=False)
    model_kwargs: dict = Field(default_factory=dict)
    _model: Any = PrivateAttr()

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model=str(model), **kwargs)  # type: ignore[call-arg]  # pydantic fields declared above
        self._model = _shared.load_model("CrossEncoder", self.model, device=self.device, model_kwargs=self.model_kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "LightembedRerank"

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            raise LightembedValueError("LightembedRerank needs the query: pass query_bundle= (or query_str=).")
        ranked = _shared.rerank(
            self._model, query_bundle.query_str, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes],
            top_k=self.top_n, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar,
        )  # fmt: skip
        out = []
        for index, score in ranked:
            node = nodes[index]
            if self.keep_retrieval_score:
                node.node.metadata["retrieval_score"] = node.score
            out.append(NodeWithScore(node=node.node, score=score))
        return out

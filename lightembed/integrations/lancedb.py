"""LanceDB: a lightembed SentenceTransformer as an embedding function in LanceDB's registry, under the name
"lightembed" (the `lancedb` extra). Importing this module registers it.

    import lancedb
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector
    import lightembed.integrations.lancedb  # noqa: F401 (registers "lightembed")

    func = get_registry().get("lightembed").create(name="path/to/model")

    class Doc(LanceModel):
        text: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()

The fields are those of LanceDB's "sentence-transformers" function that mean something here (`name`: the model
folder, .onnx file or Hub id; `device`; `normalize`, True by default as there) plus `batch_size`,
`show_progress` and `model_kwargs` for the model's constructor. The source column gets the model's
"document"/"passage" prompt and `table.search("text")` the "query" prompt; LanceDB's sentence-transformers
function embeds both alike. LanceDB stores the fields in the table's metadata, so a table opened later (in a
process that imported this module) embeds its queries with the same model.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

from lightembed.integrations import _shared

_shared.require("lancedb", "lancedb", "lightembed.integrations.lancedb")

import numpy as np  # noqa: E402
from lancedb.embeddings import TextEmbeddingFunction, register  # noqa: E402
from pydantic import Field, PrivateAttr  # noqa: E402

__all__ = ["LightembedEmbeddings"]


@register("lightembed")
class LightembedEmbeddings(TextEmbeddingFunction):
    """Dense embeddings from a lightembed SentenceTransformer for LanceDB's embedding API."""

    name: str
    device: Optional[str] = None
    normalize: bool = True
    batch_size: int = 32
    show_progress: bool = False
    model_kwargs: dict = Field(default_factory=dict)
    _model: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        """The loaded lightembed model (loaded on first use, shared with every adapter that loads it)."""
        if self._model is None:
            self._model = _shared.load_model(
                "SentenceTransformer", self.name, device=self.device, model_kwargs=self.model_kwargs
            )
        return self._model

    def ndims(self) -> int:
        return int(self.client.get_sentence_embedding_dimension())

    def _embed(self, texts: Union[List[str], np.ndarray], role: _shared.Role) -> List[List[float]]:
        texts = [str(t) for t in (texts.tolist() if isinstance(texts, np.ndarray) else texts)]
        vectors = _shared.embed(self.client, texts, role, batch_size=self.batch_size,
                                normalize_embeddings=self.normalize, show_progress_bar=self.show_progress)  # fmt: skip
        return vectors.tolist()

    def generate_embeddings(self, texts: Union[List[str], np.ndarray], *args: Any, **kwargs: Any) -> List[Any]:
        """Embeddings of the source column's texts (with the model's document prompt, if it has one)."""
        return self._embed(texts, "document")

    def compute_query_embeddings(self, query: str, *args: Any, **kwargs: Any) -> List[Any]:
        """The embedding of a search query (with the model's query prompt, if it has one)."""
        return self._embed([query], "query")

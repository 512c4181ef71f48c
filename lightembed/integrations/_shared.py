"""What the framework adapters (langchain, llama_index, haystack, chroma, lancedb, qdrant) share.

- `require()`: imports a framework module or raises an ImportError that names lightembed's extra for it.
- `load_model()`: one loaded model per (kind, path, device, options), kept in a small LRU so that every adapter
  that names the same folder (a LangChain embedder, a Haystack component and a Chroma function in one process)
  runs the same ONNX session instead of loading it again.
- `embed()`, `embed_sparse()`, `rerank()`: the calls that adapters make, with a query or a document role: the
  model's own "query" / "document" prompt is applied by encode_query()/encode_document() unless the caller gives a
  prompt, so every framework gets the vectors encode() gives for the same arguments.

Only lightembed's public model API is used here, and no framework is imported, so a framework's module can move
into its own package (langchain-lightembed, llama-index-embeddings-lightembed, lightembed-haystack) as it is.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from lightembed.errors import LightembedTypeError

ModelKind = Literal["SentenceTransformer", "SparseEncoder", "CrossEncoder"]
Role = Literal["query", "document"]

CACHE_SIZE = 8
_models: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()


def require(module: str, extra: str, what: str) -> Any:
    """Import `module`, or raise an ImportError saying which extra of lightembed brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f'{what} needs the {module.split(".")[0]} package: pip install "lightembed[{extra}]" ({err})'
        ) from None


def _model_class(kind: ModelKind) -> type:
    import lightembed

    return getattr(lightembed, kind)


def _key(kind: ModelKind, model: str | os.PathLike, device: str | None, options: Mapping[str, Any]) -> tuple:
    name = os.fspath(model)
    if os.path.exists(name):
        name = os.path.realpath(name)
    try:
        frozen = json.dumps(options, sort_keys=True, default=repr)
    except TypeError:  # keys that are not strings
        frozen = repr(sorted(options.items(), key=repr))
    return kind, name, device, frozen


def load_model(
    kind: ModelKind,
    model: Any,
    *,
    device: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """The lightembed model of `kind` for `model`: a folder, a file or a Hub id, loaded once per process and
    options (`device`, `model_kwargs` passed to the constructor), or an already loaded model, returned as it is."""
    cls = _model_class(kind)
    if isinstance(model, cls):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise LightembedTypeError(
            f"model must be a folder, a file or a Hub id (str or path), or a loaded lightembed.{kind}; "
            f"got {type(model).__name__}."
        )
    options = dict(model_kwargs or {})
    key = _key(kind, model, device, options)
    with _lock:  # loading under the lock: two adapters asking at once get one model, not two
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        loaded = cls(os.fspath(model), device=device, **options)
        _models[key] = loaded
        while len(_models) > CACHE_SIZE:
            _models.popitem(last=False)
        return loaded


def clear_cache() -> None:
    """Forget the loaded models (adapters that hold one keep it)."""
    with _lock:
        _models.clear()


def model_id(model: Any) -> str:
    """The name an adapter reports or serializes: the path or Hub id it was given, or a loaded model's folder."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    folder = getattr(model, "model_dir", None)
    return str(folder) if folder is not None else type(model).__name__


def _role_call(model: Any, role: Role) -> Any:
    return model.encode_query if role == "query" else model.encode_document


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise LightembedTypeError(f"texts must be a list of strings, got {type(texts).__name__}.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LightembedTypeError(f"texts[{i}] must be a string, got {type(text).__name__}.")
    return list(texts)


def embed(
    model: Any,
    texts: Sequence[str],
    role: Role,
    *,
    batch_size: int = 32,
    normalize_embeddings: bool = False,
    show_progress_bar: bool | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
    **encode_kwargs: Any,
) -> np.ndarray:
    """(n, dim) float32 dense embeddings of `texts` with the model's query or document prompt (or the given one)."""
    texts = _check_texts(texts)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
    return _role_call(model, role)(
        texts,
        batch_size=batch_size,
        normalize_embeddings=normalize_embeddings,
        show_progress_bar=show_progress_bar,
        prompt=prompt,
        prompt_name=prompt_name,
        convert_to_numpy=True,
        **encode_kwargs,
    )


def embed_sparse(
    model: Any,
    texts: Sequence[str],
    role: Role,
    *,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
    **encode_kwargs: Any,
) -> list[tuple[list[int], list[float]]]:
    """(indices, values) of each text's SPLADE vector, indices ascending, with the query or document prompt."""
    texts = _check_texts(texts)
    if not texts:
        return []
    rows = _role_call(model, role)(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        prompt=prompt,
        prompt_name=prompt_name,
        convert_to_tensor=True,
        convert_to_sparse_tensor=True,
        **encode_kwargs,
    )
    return [(row.indices.tolist(), row.values.tolist()) for row in rows]


def rerank(
    model: Any,
    query: str,
    documents: Sequence[str],
    *,
    top_k: int | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    activation_fn: Any = None,
) -> list[tuple[int, float]]:
    """(document index, score) pairs, best first, from the CrossEncoder's rank() (`top_k` None: all)."""
    if not documents:
        return []
    ranked = model.rank(
        query,
        list(documents),
        top_k=top_k,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        activation_fn=activation_fn,
    )
    return [(int(r["corpus_id"]), float(r["score"])) for r in ranked]

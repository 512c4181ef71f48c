"""lightembed.integrations._shared: each framework module names its extra when the framework is missing, models are
loaded once per folder and options (a small LRU), and a loaded model passes through."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from lightembed import SentenceTransformer, SparseEncoder
from lightembed.integrations import _shared
from tests.integration_kit import DOCS, folders  # noqa: F401 (fixtures)


@pytest.mark.parametrize(
    "module, framework, extra",
    [
        ("langchain", "langchain_core", "langchain"),
        ("llama_index", "llama_index.core", "llama-index"),
        ("haystack", "haystack", "haystack"),
        ("chroma", "chromadb", "chroma"),
        ("lancedb", "lancedb", "lancedb"),
        ("qdrant", "qdrant_client", "qdrant"),
    ],
)
def test_a_missing_framework_names_the_extra(monkeypatch, module, framework, extra):
    name = f"lightembed.integrations.{module}"
    monkeypatch.setitem(sys.modules, framework, None)  # what import sees when the package is not installed
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=rf'pip install "lightembed\[{extra}\]"'):
        importlib.import_module(name)


def test_one_model_per_folder_and_options_in_a_bounded_cache(folders, monkeypatch):
    _shared.clear_cache()
    a = _shared.load_model("SentenceTransformer", folders["dense"])
    assert _shared.load_model("SentenceTransformer", str(folders["dense"]) + "/") is a  # same folder, other spelling
    assert _shared.load_model("SentenceTransformer", folders["dense"], model_kwargs={"threads": 1}) is not a
    assert isinstance(_shared.load_model("SparseEncoder", folders["sparse"]), SparseEncoder)
    monkeypatch.setattr(_shared, "CACHE_SIZE", 2)
    _shared.load_model("CrossEncoder", folders["ce"])  # the least recently used (a) goes
    assert _shared.load_model("SentenceTransformer", folders["dense"]) is not a


def test_a_loaded_model_passes_through_and_other_objects_are_refused(folders):
    model = SentenceTransformer(folders["dense"])
    assert _shared.load_model("SentenceTransformer", model) is model
    with pytest.raises(TypeError, match="lightembed.SentenceTransformer"):
        _shared.load_model("SentenceTransformer", 42)


def test_embed_applies_roles_and_refuses_a_bare_string(folders):
    model = SentenceTransformer(folders["dense"])
    np.testing.assert_array_equal(_shared.embed(model, DOCS, "query"), model.encode(DOCS, prompt="query "))
    np.testing.assert_array_equal(_shared.embed(model, DOCS, "document"), model.encode(DOCS, prompt="passage "))
    assert _shared.embed(model, [], "query").shape == (0, model.get_sentence_embedding_dimension())
    with pytest.raises(TypeError, match="list of strings"):
        _shared.embed(model, "one text", "query")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        _shared.embed(model, ["a", 3], "query")

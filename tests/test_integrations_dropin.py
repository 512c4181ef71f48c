"""The drop-in claim inside frameworks: with `sys.modules["sentence_transformers"] = lightembed`, the frameworks'
own sentence-transformers classes (Haystack's SentenceTransformersTextEmbedder, LangChain's HuggingFaceEmbeddings)
run a lightembed model folder unchanged and give encode()'s vectors with torch blocked (`sys.modules["torch"] =
None`: any import of it fails, as where torch is not installed; Haystack itself imports torch whenever it is
installed, in haystack.utils.device). Each runs in a fresh process, so the swaps cannot leak into other tests.

Haystack's embedder passes `backend="torch"`, `processor_kwargs=` and `config_kwargs=` and imports a top-level
`quantize_embeddings`: it runs once lightembed accepts those (issue 21's drop-in gaps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.integration_kit import DOCS, make_folders

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import json, sys
sys.modules["torch"] = None
import lightembed
sys.modules["sentence_transformers"] = lightembed
folder = sys.argv[1]
"""

SCRIPTS = {
    "haystack": """
import os
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"
from haystack import Document
from haystack.utils import ComponentDevice
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder, SentenceTransformersTextEmbedder,
)
device = ComponentDevice.from_str("cpu")
text = SentenceTransformersTextEmbedder(model=folder, device=device, progress_bar=False)
text.warm_up()
docs = SentenceTransformersDocumentEmbedder(model=folder, device=device, progress_bar=False)
docs.warm_up()
out = {
    "query": text.run(sys.argv[2])["embedding"],
    "docs": [d.embedding for d in docs.run([Document(content=t) for t in json.loads(sys.argv[3])])["documents"]],
}
""",
    "langchain": """
from langchain_huggingface import HuggingFaceEmbeddings
emb = HuggingFaceEmbeddings(model_name=folder, model_kwargs={"device": "cpu"})
out = {"query": emb.embed_query(sys.argv[2]), "docs": emb.embed_documents(json.loads(sys.argv[3]))}
""",
}

EPILOGUE = """
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("dropin"))["dense"]


@pytest.mark.parametrize("framework", sorted(SCRIPTS))
def test_framework_sentence_transformers_class_runs_on_lightembed(framework, folder):
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + SCRIPTS[framework] + EPILOGUE, str(folder), "hello world", json.dumps(DOCS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    model = SentenceTransformer(folder)
    # Both frameworks call plain encode() (no prompt) unless told otherwise; the model does not normalize.
    np.testing.assert_array_equal(np.array(out["query"], dtype=np.float32), model.encode("hello world"))
    np.testing.assert_array_equal(np.array(out["docs"], dtype=np.float32), model.encode(DOCS))

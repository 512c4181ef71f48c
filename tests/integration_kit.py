"""What tests/test_integrations_*.py share: tiny model folders with query/document prompts, the texts, the
brute-force answers the frameworks' stores must match, and a `lightembed serve` subprocess for the HTTP paths."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.test_cross_encoder import make_ce
from tests.test_server import Server
from tests.test_sparse_encoder import make_splade
from tests.tiny import make_model

PROMPTS = {"query": "query ", "document": "passage "}
DOCS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "hello world",
    "red blue green",
    "big small fast slow",
    "the dog sat in the park",
]
QUERIES = ["cat on a mat", "dog park", "hello", "green blue", "slow big"]


def make_folders(root: Path) -> dict[str, Path]:
    """A dense model that does not normalize (so normalize_embeddings shows), a SPLADE and a cross-encoder, each
    with a query prompt that changes the vectors."""
    return {
        "dense": make_model(root / "dense", normalize=False, prompts=PROMPTS),
        "sparse": make_splade(root / "sparse", prompts=PROMPTS),
        "ce": make_ce(root / "ce"),
    }


def cosine_top1(query: np.ndarray, docs: np.ndarray) -> int:
    """Index of the document with the highest cosine similarity to `query`."""
    q = query / np.linalg.norm(query)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    return int(np.argmax(d @ q))


def dense_answers(model, docs=DOCS, queries=QUERIES) -> list[int]:
    """Brute-force top-1 document of each query: encode_query against encode_document, cosine."""
    d = model.encode_document(docs)
    return [cosine_top1(model.encode_query(q), d) for q in queries]


@contextmanager
def served(folder: Path, name: str = "emb", *extra: str) -> Iterator[Server]:
    """`lightembed serve FOLDER=NAME` on a free loopback port, stopped on leaving the block."""
    server = Server([f"{folder}={name}", *extra])
    try:
        yield server
    finally:
        server.stop()


# Fixtures the test modules import (`from tests.integration_kit import dense, folders`).
@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return make_folders(tmp_path_factory.mktemp("integration"))


@pytest.fixture(scope="module")
def dense(folders) -> SentenceTransformer:
    return SentenceTransformer(folders["dense"])

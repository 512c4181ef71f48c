"""lightembed.integrations.lancedb against the real lancedb: the registered "lightembed" function gives encode()'s
vectors with the role prompts, a table on a tmp dir retrieves what brute force does (also reopened from its stored
config), and LanceDB's "openai" function talks to `lightembed serve` under an OpenAI model name."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration_kit import DOCS, QUERIES, dense, dense_answers, folders, served  # noqa: F401 (fixtures)

import lancedb  # noqa: E402
from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.pydantic import LanceModel, Vector  # noqa: E402

from lightembed.integrations.lancedb import LightembedEmbeddings  # noqa: E402


def table_of(func, db, name: str):
    class Doc(LanceModel):
        text: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()

    table = db.create_table(name, schema=Doc)
    table.add([{"text": t} for t in DOCS])
    return table


def test_registered_function_gives_encode_vectors_with_the_role_prompts(folders, dense):
    func = get_registry().get("lightembed").create(name=str(folders["dense"]), batch_size=2)
    assert isinstance(func, LightembedEmbeddings)
    assert func.ndims() == dense.get_sentence_embedding_dimension()
    np.testing.assert_array_equal(
        np.array(func.compute_source_embeddings(DOCS), dtype=np.float32),
        dense.encode(DOCS, prompt="passage ", normalize_embeddings=True, batch_size=2),  # the same batches
    )
    [query] = func.compute_query_embeddings(QUERIES[0])
    np.testing.assert_array_equal(
        np.array(query, dtype=np.float32), dense.encode(QUERIES[0], prompt="query ", normalize_embeddings=True)
    )
    raw = get_registry().get("lightembed").create(name=str(folders["dense"]), normalize=False)
    np.testing.assert_array_equal(np.array(raw.compute_source_embeddings(DOCS[:1]), dtype=np.float32),
                                  dense.encode(DOCS[:1], prompt="passage "))  # fmt: skip
    assert raw.client is func.client  # one model


def test_table_search_top1_equals_brute_force_and_reopens(folders, dense, tmp_path):
    func = get_registry().get("lightembed").create(name=str(folders["dense"]))
    table = table_of(func, lancedb.connect(tmp_path), "docs")
    answers = dense_answers(dense)
    assert len(set(answers)) > 2
    for query, want in zip(QUERIES, answers):
        assert table.search(query).distance_type("cosine").limit(1).to_list()[0]["text"] == DOCS[want]
    reopened = lancedb.connect(tmp_path).open_table("docs")  # the function is rebuilt from the table's metadata
    assert reopened.search(QUERIES[1]).distance_type("cosine").limit(1).to_list()[0]["text"] == DOCS[answers[1]]


def test_openai_function_over_http_under_an_openai_model_name(folders, dense, tmp_path):
    # LanceDB's "openai" function knows OpenAI's model names only: serve the model under one.
    with served(folders["dense"], "text-embedding-3-small") as server:
        get_registry().set_var("lightembed-test-key", "unused")  # LanceDB refuses a literal api_key
        func = get_registry().get("openai").create(name="text-embedding-3-small", dim=8, base_url=server.url + "/v1",
                                                   api_key="$var:lightembed-test-key")  # fmt: skip
        got = np.array(func.compute_source_embeddings(DOCS), dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode(DOCS, normalize_embeddings=True), atol=1e-6)
        table = table_of(func, lancedb.connect(tmp_path), "http-docs")
        hit = table.search(QUERIES[2]).distance_type("cosine").limit(1).to_list()[0]["text"]
        docs = dense.encode(DOCS, normalize_embeddings=True)
        assert hit == DOCS[int(np.argmax(docs @ dense.encode(QUERIES[2], normalize_embeddings=True)))]

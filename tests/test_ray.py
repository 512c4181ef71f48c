"""Ray Data (lightembed/integrations/ray.py) on a real local Ray (`ray.init(num_cpus=2)`, shut down after): a
Parquet dataset of real headlines embedded by Ray actors and written back to Parquet equals
SentenceTransformer.encode row by row, with no row lost or duplicated; `embed-file --ray` runs the same job;
sparse vectors and rerank scores through the same wiring."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.corpus import headlines
from lightembed import SentenceTransformer
from tests.tiny import WORDS, make_model

pytestmark = pytest.mark.ray
N = 300


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("ray") / "tiny")


@pytest.fixture(scope="module")
def texts():
    # Real headlines; two words of the tiny model's vocabulary first (inside its 12 tokens) tell rows apart.
    return [f"{WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]} {h}" for i, h in enumerate(headlines()[:N])]


def read_rows(folder) -> pa.Table:
    return pq.read_table(folder)  # a folder of part files


def vectors(table: pa.Table, column: str = "embedding") -> np.ndarray:
    col = table.column(column).combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), -1)


def test_embed_dataset_equals_encode_for_every_row(ray_local, folder, texts, tmp_path):
    from lightembed.integrations.ray import embed_dataset

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"doc": [f"d{i}" for i in range(N)], "text": texts}), src, row_group_size=50)
    ds = ray_local.data.read_parquet(str(src))
    # Half a CPU per actor: two actors with a whole CPU each would leave none for the read and write tasks.
    out = embed_dataset(ds, str(folder), concurrency=2, batch_size=64, num_cpus=0.5)
    out.write_parquet(str(tmp_path / "out"))

    table = read_rows(tmp_path / "out")
    docs = table.column("doc").to_pylist()
    assert sorted(docs) == sorted(f"d{i}" for i in range(N))  # every row once
    model = SentenceTransformer(folder)
    expected = model.encode(texts)
    got = vectors(table)
    for row, doc in enumerate(docs):
        np.testing.assert_allclose(got[row], expected[int(doc[1:])], rtol=1e-6, atol=1e-6)
    assert table.column("text").to_pylist() == [texts[int(d[1:])] for d in docs]


def test_actor_threads_follow_its_cpus(ray_local, folder):
    from lightembed.integrations.ray import Embedder

    @ray_local.remote
    def threads_in_actor():
        return Embedder(str(folder)).model.runtime_info.intra_op_threads

    assert ray_local.get(threads_in_actor.options(num_cpus=2).remote()) == 2
    assert ray_local.get(threads_in_actor.options(num_cpus=1).remote()) == 1


def test_embed_file_with_ray_writes_the_job_in_input_order(ray_local, folder, texts, tmp_path):
    import json

    from lightembed.embed_file import main

    src = tmp_path / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    out = tmp_path / "vectors"
    assert main([str(src), "-o", str(out), "--model", str(folder), "--ray", "--concurrency", "2",
                 "--num-cpus", "0.5", "--batch-size", "64", "--normalize"]) == 0
    table = read_rows(out)
    assert table.column("id").to_pylist() == list(range(N))
    expected = SentenceTransformer(folder).encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(vectors(table), expected, rtol=1e-6, atol=1e-6)
    meta = json.loads((out / "_lightembed.json").read_text())
    assert meta["model"] == str(folder) and meta["rows"] == N and meta["normalize_embeddings"] is True
    assert main([str(src), "-o", str(out), "--model", str(folder), "--ray"]) == 2  # exists: no silent overwrite


def test_sparse_vectors_and_rerank_scores_fall_out_the_same_way(ray_local, texts, tmp_path):
    from lightembed import CrossEncoder, SparseEncoder
    from lightembed.integrations.ray import embed_sparse_dataset, rerank_dataset
    from tests.test_cross_encoder import make_ce
    from tests.test_sparse_encoder import make_splade

    splade, ce = make_splade(tmp_path / "splade"), make_ce(tmp_path / "ce")
    rows = [{"query": texts[i], "document": texts[-1 - i], "text": texts[i]} for i in range(40)]
    ds = ray_local.data.from_items(rows)
    ds = embed_sparse_dataset(ds, str(splade), concurrency=1, num_cpus=0.5, batch_size=16)
    table = rerank_dataset(ds, str(ce), concurrency=1, num_cpus=0.5, batch_size=16).to_arrow_refs()
    table = pa.concat_tables(ray_local.get(table))
    by_text = {r["query"] + "|" + r["document"]: r for r in table.to_pylist()}
    assert len(by_text) == len(rows) == table.num_rows
    sparse = SparseEncoder(splade).encode([r["text"] for r in rows])
    scores = CrossEncoder(ce).predict([(r["query"], r["document"]) for r in rows])
    for i, r in enumerate(rows):
        got = by_text[r["query"] + "|" + r["document"]]
        assert got["sparse_embedding"]["indices"] == sparse[i].indices.tolist()
        np.testing.assert_allclose(got["sparse_embedding"]["values"], sparse[i].values, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["score"], scores[i], rtol=1e-6, atol=1e-6)


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from lightembed.integrations import ray as integration

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "lightembed\[ray\]"'):
        integration.embed_dataset(None, "model")

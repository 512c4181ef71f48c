"""SparseEncoder Routers: inference-free SPLADE as sentence-transformers builds it (a SparseStaticEmbedding of token
weights for queries, a SPLADE masked LM for documents), exported route by route and compared with
sentence-transformers' SparseEncoder on a tiny seeded model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.static_models import TEXTS

pytestmark = pytest.mark.integration


def _dense(x) -> np.ndarray:
    return np.asarray(x.to_dense().cpu().numpy() if hasattr(x, "to_dense") else x)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    from lightembed_export import export_model

    from tests.static_models import sparse_router

    root = tmp_path_factory.mktemp("sparse-router")
    src = sparse_router(root)
    report = export_model(src, root / "out", verbose=False)
    return src, root / "out", report


def test_inference_free_splade_routes_as_sentence_transformers(exported) -> None:
    """encode_query runs the token-weight table (no graph), encode_document and encode() the exported SPLADE
    route (the default), each as sentence-transformers' SparseEncoder runs them."""
    import sentence_transformers

    import lightembed

    src, out, report = exported
    assert report["model"]["architecture"] == "Router" and set(report["routes"]) == {"document"}
    assert all(entry["passed"] for entry in report["files"]) and report["files"]
    ref = sentence_transformers.SparseEncoder(str(src), device="cpu")
    ours = lightembed.SparseEncoder(str(out))
    assert set(ours.routes) == {"query"} and ours.router.default_route == "document"
    query = ours.encode_query(TEXTS, convert_to_sparse_tensor=False)
    np.testing.assert_allclose(query, _dense(ref.encode_query(TEXTS)), atol=1e-6)
    document = ours.encode_document(TEXTS, convert_to_sparse_tensor=False)
    np.testing.assert_allclose(document, _dense(ref.encode_document(TEXTS)), atol=1e-4)
    np.testing.assert_allclose(ours.encode(TEXTS, convert_to_sparse_tensor=False), _dense(ref.encode(TEXTS)),
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(ours.encode(TEXTS, task="query", convert_to_sparse_tensor=False),
                               _dense(ref.encode(TEXTS, task="query")), atol=1e-6)  # fmt: skip
    # the query side is each token's weight once, no special tokens: ([CLS], [SEP] weigh nothing)
    tokens = ours.routes["query"].tokenizer.encode("the cat sat on the mat", add_special_tokens=False).ids
    assert set(np.flatnonzero(query[0])) == set(tokens)
    assert np.abs(query[0] - document[0]).max() > 0.01  # two routes
    assert ours.routes["query"].runtime_info.providers == ["NumPy (static table)"]
    assert ours.runtime_info.onnx_file == "onnx/model.onnx" and ours.runtime_info.verified
    assert ours.get_embedding_dimension() == ours.routes["query"].get_embedding_dimension()


def test_max_active_dims_and_decode_on_each_route(exported) -> None:
    import sentence_transformers

    import lightembed

    src, out, _ = exported
    ref = sentence_transformers.SparseEncoder(str(src), device="cpu", max_active_dims=3)
    ours = lightembed.SparseEncoder(str(out), max_active_dims=3)
    for side in ("encode_query", "encode_document"):
        got = getattr(ours, side)(TEXTS[:1], convert_to_sparse_tensor=False)
        want = _dense(getattr(ref, side)(TEXTS[:1]))
        assert np.count_nonzero(got) == 3
        np.testing.assert_allclose(got, want, atol=1e-4)
    vector = ours.encode_query("the cat")
    assert {token for token, _ in ours.routes["query"].decode(vector)} == {"the", "cat"}


def test_a_sparse_router_is_refused_by_a_pool(exported) -> None:
    import lightembed
    from lightembed import NotSupportedError

    ours = lightembed.SparseEncoder(str(exported[1]))
    with pytest.raises(NotSupportedError, match="start the pool on the route"):
        ours.start_multi_process_pool(["cpu"])
    with pytest.raises(ValueError, match="No route for task 'passage'"):
        ours.encode(TEXTS, task="passage")


def test_token_weights_table_gives_each_token_once_and_refuses_foreign_ids() -> None:
    """The static backend's SparseStaticGraph alone: a text's vector holds each of its real tokens' weights once
    (repeats and padding add nothing); a token id beyond the table names the mismatch."""
    from lightembed.errors import ModelFileError
    from lightembed.graphs.static import SparseStaticGraph

    graph = SparseStaticGraph(Path("weights.safetensors"), np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32))
    out = graph({"input_ids": np.array([[1, 3, 3, 0], [2, 0, 0, 0]]), "attention_mask": np.array([[1, 1, 1, 0],
                                                                                                   [1, 0, 0, 0]])})
    np.testing.assert_array_equal(out, [[0, 1, 0, 3], [0, 0, 2, 0]])
    with pytest.raises(ModelFileError, match="outside the 4 weights"):
        graph({"input_ids": np.array([[7]]), "attention_mask": np.array([[1]])})

"""Tests for lightembed.util.

Reference-free tests run everywhere. Tests that take the ``st`` fixture compare
against sentence-transformers and are skipped when it is not installed.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UTIL_DIR = REPO_ROOT / "lightembed" / "util"  # a package, as sentence-transformers 6's util
UTIL_PATH = UTIL_DIR / "__init__.py"


import lightembed.util as le  # noqa: E402

MATRIX_FNS = ["cos_sim", "dot_score", "euclidean_sim", "manhattan_sim"]
PAIRWISE_FNS = ["pairwise_cos_sim", "pairwise_dot_score", "pairwise_euclidean_sim", "pairwise_manhattan_sim"]
ATOL = 1e-6
RTOL = 1e-6


@pytest.fixture(scope="module")
def st():
    """sentence-transformers' util package (skips the test if unavailable)."""
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import util  # noqa: PLC0415

    return util


def _rand(rng, shape, dtype=np.float32):
    """Gaussian rows scaled to roughly unit norm, like real embeddings."""
    dim = shape[-1] if shape and shape[-1] else 1
    return (rng.standard_normal(shape) / math.sqrt(dim)).astype(dtype)


def _seed(*parts) -> int:
    """Deterministic seed from test parameters (``hash`` is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


# =========================================================================== #
# Reference-free tests
# =========================================================================== #
def test_cos_sim_hand_computed():
    res = le.cos_sim([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], [[1.0, 1.0], [0.0, -5.0]])
    assert isinstance(res, np.ndarray)
    assert res.dtype == np.float32  # lists become float32
    r = 1 / math.sqrt(2)
    expected = np.array([[r, 0.0], [r, -1.0], [1.0, -r]], dtype=np.float32)
    np.testing.assert_allclose(res, expected, atol=1e-6)


def test_cos_sim_zero_vectors_give_zero_not_nan():
    res = le.cos_sim(np.zeros((2, 4), dtype=np.float32), np.array([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=np.float32))
    assert not np.isnan(res).any()
    np.testing.assert_array_equal(res, np.zeros((2, 2), dtype=np.float32))
    assert not np.isnan(le.pairwise_cos_sim(np.zeros((3, 2)), np.zeros((3, 2)))).any()


def test_one_dimensional_inputs_are_single_rows():
    a = np.array([1.0, 2.0, 2.0], dtype=np.float32)
    b = np.array([[1.0, 2.0, 2.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    assert le.cos_sim(a, b).shape == (1, 2)
    assert le.cos_sim(b, a).shape == (2, 1)
    assert le.dot_score(a, a).shape == (1, 1)
    np.testing.assert_allclose(le.dot_score(a, b), [[9.0, 2.0]])
    np.testing.assert_allclose(le.euclidean_sim(a, b), [[0.0, -3.0]], atol=1e-6)
    np.testing.assert_allclose(le.manhattan_sim(a, b), [[0.0, -5.0]])


def test_distance_similarities_are_negative_distances():
    a = [[0.0, 0.0], [1.0, 1.0]]
    b = [[3.0, 4.0], [1.0, 1.0], [-1.0, 1.0]]
    np.testing.assert_allclose(le.euclidean_sim(a, b), [[-5.0, -math.sqrt(2), -math.sqrt(2)], [-math.sqrt(13), 0.0, -2.0]], atol=1e-6)
    np.testing.assert_allclose(le.manhattan_sim(a, b), [[-7.0, -2.0, -2.0], [-5.0, 0.0, -2.0]])
    np.testing.assert_allclose(le.pairwise_euclidean_sim(a, b[:2]), [-5.0, 0.0])
    np.testing.assert_allclose(le.pairwise_manhattan_sim(a, b[:2]), [-7.0, 0.0])


def test_pairwise_hand_computed_and_shapes():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [5.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(le.pairwise_dot_score(a, b), [2.0, -2.0, 0.0])
    np.testing.assert_allclose(le.pairwise_cos_sim(a, b), [1.0, -1.0, 0.0], atol=1e-6)
    for name in PAIRWISE_FNS:
        res = getattr(le, name)(a, b)
        assert isinstance(res, np.ndarray) and res.shape == (3,) and res.dtype == np.float32, name
        one = getattr(le, name)(a[1], b[1])
        assert isinstance(one, np.ndarray) and one.shape == (), name
        np.testing.assert_allclose(one, res[1], atol=1e-6)


@pytest.mark.parametrize("name", MATRIX_FNS + PAIRWISE_FNS)
def test_dtype_preserved(name):
    rng = np.random.default_rng(1)
    fn = getattr(le, name)
    a32, b32 = _rand(rng, (4, 6)), _rand(rng, (4, 6))
    assert fn(a32, b32).dtype == np.float32
    assert fn(a32.astype(np.float64), b32.astype(np.float64)).dtype == np.float64
    assert fn(a32.astype(np.float16), b32.astype(np.float16)).dtype == np.float32
    assert fn(a32.astype(np.int64), b32.astype(np.int64)).dtype == np.float32


def test_normalize_embeddings():
    emb = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], dtype=np.float32)
    out = le.normalize_embeddings(emb)
    assert out.dtype == np.float32 and out.shape == emb.shape
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], atol=1e-7)
    assert le.normalize_embeddings(emb.astype(np.float64)).dtype == np.float64
    np.testing.assert_allclose(le.normalize_embeddings([3.0, 4.0]), [0.6, 0.8], atol=1e-7)
    np.testing.assert_array_equal(emb[0], [3.0, 4.0])  # input untouched


@pytest.mark.parametrize("name", MATRIX_FNS + PAIRWISE_FNS)
def test_dimension_mismatch_raises_value_error(name):
    fn = getattr(le, name)
    with pytest.raises(ValueError, match="dim"):
        fn(np.ones((2, 3)), np.ones((2, 4)))


@pytest.mark.parametrize("name", PAIRWISE_FNS)
def test_pairwise_row_mismatch_raises_value_error(name):
    with pytest.raises(ValueError, match="rows"):
        getattr(le, name)(np.ones((2, 3)), np.ones((3, 3)))


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="1-D or 2-D"):
        le.cos_sim(np.ones((2, 3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError):
        le.cos_sim([[1.0, 2.0], [1.0]], [[1.0, 2.0]])  # ragged
    with pytest.raises(ValueError, match="dim"):
        le.semantic_search(np.ones((2, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="dim"):
        le.semantic_search(np.ones((2, 3)), np.ones((0, 4)))
    with pytest.raises(ValueError, match="top_k"):
        le.semantic_search(np.ones((2, 3)), np.ones((5, 3)), top_k=-1)
    with pytest.raises(ValueError, match="query_chunk_size"):
        le.semantic_search(np.ones((2, 3)), np.ones((5, 3)), query_chunk_size=0)
    with pytest.raises(ValueError, match="max_pairs"):
        le.paraphrase_mining_embeddings(np.ones((4, 3)), max_pairs=0)
    with pytest.raises(ValueError, match="min_community_size"):
        le.community_detection(np.ones((4, 3)), min_community_size=0)
    with pytest.raises(ValueError, match="score_function returned shape"):
        le.semantic_search(np.ones((2, 3)), np.ones((5, 3)), score_function=lambda q, c: np.ones(3))


def test_semantic_search_hand_computed():
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    queries = np.array([[1.0, 0.1], [0.0, -1.0]], dtype=np.float32)
    res = le.semantic_search(queries, corpus, top_k=2)
    # query 1 ties corpus 0 and 3 at score 0: lower corpus_id first
    assert [[h["corpus_id"] for h in hits] for hits in res] == [[0, 2], [0, 3]]
    assert res[1][0]["score"] == pytest.approx(0.0, abs=1e-6)
    assert res[1][1]["score"] == pytest.approx(0.0, abs=1e-6)
    assert le.semantic_search(queries, corpus, top_k=3)[1][2]["corpus_id"] == 2
    for hits in res:
        for hit in hits:
            assert set(hit) == {"corpus_id", "score"}
            assert type(hit["corpus_id"]) is int and type(hit["score"]) is float
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
    # dot product instead of cosine changes the winner for query 0
    res_dot = le.semantic_search(queries, corpus, top_k=1, score_function=le.dot_score)
    assert res_dot[0][0]["corpus_id"] == 2 and res_dot[0][0]["score"] == pytest.approx(1.1, abs=1e-6)


def test_semantic_search_edge_cases():
    corpus = np.eye(3, dtype=np.float32)
    assert le.semantic_search(np.ones((2, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.float32)) == [[], []]
    assert le.semantic_search(np.zeros((0, 3), dtype=np.float32), corpus) == []
    res = le.semantic_search(np.array([1.0, 0.5, 0.0], dtype=np.float32), corpus, top_k=10)  # 1-D query
    assert len(res) == 1 and [h["corpus_id"] for h in res[0]] == [0, 1, 2]
    assert le.semantic_search(corpus, corpus, top_k=0) == [[], [], []]
    assert le.information_retrieval(corpus, corpus, top_k=1) == le.semantic_search(corpus, corpus, top_k=1)


def test_semantic_search_ties_prefer_lower_corpus_id_across_chunks():
    corpus = np.ones((7, 2), dtype=np.float32)
    for chunk in (1, 2, 3, 7):
        res = le.semantic_search(np.ones((1, 2), dtype=np.float32), corpus, top_k=3, corpus_chunk_size=chunk)
        assert [h["corpus_id"] for h in res[0]] == [0, 1, 2], chunk


def test_semantic_search_nan_scores_rank_last():
    def scores(q, c):
        return np.array([[0.1, np.nan, 0.5, -0.2]], dtype=np.float32)

    res = le.semantic_search(np.ones((1, 2)), np.ones((4, 2)), top_k=3, score_function=scores)
    assert [h["corpus_id"] for h in res[0]] == [2, 0, 3]


def test_semantic_search_chunking_invariant_and_matches_bruteforce(monkeypatch):
    rng = np.random.default_rng(7)
    q, c = _rand(rng, (13, 8)), _rand(rng, (57, 8))
    sims = le.cos_sim(q, c)
    expected = [list(np.argsort(-row, kind="stable")[:5]) for row in sims]
    full = le.semantic_search(q, c, top_k=5)
    assert [[h["corpus_id"] for h in hits] for hits in full] == expected
    # small top-k blocks exercise the multi-block selection path
    monkeypatch.setattr(le, "_TOPK_BLOCK_ELEMS", 20)
    for qc, cc in [(1, 1), (4, 10), (13, 57), (100, 3)]:
        chunked = le.semantic_search(q, c, top_k=5, query_chunk_size=qc, corpus_chunk_size=cc)
        # BLAS rounding may differ with the chunk shapes, so scores get a tolerance
        assert [[h["corpus_id"] for h in hits] for hits in chunked] == expected
        np.testing.assert_allclose(
            [[h["score"] for h in hits] for hits in chunked], [[h["score"] for h in hits] for hits in full], atol=1e-6
        )


def test_paraphrase_mining_embeddings_hand_computed():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    pairs = le.paraphrase_mining_embeddings(emb, top_k=3)
    keys = [(i, j) for _, i, j in pairs]
    assert all(i < j for i, j in keys) and len(set(keys)) == len(keys)
    # (0, 3) are opposite: cosine exactly -1 counts too (sentence-transformers 6 keeps every score; 5.x dropped -1)
    assert set(keys) == {(0, 1), (1, 2), (0, 2), (2, 3), (1, 3), (0, 3)} and pairs[-1][0] == pytest.approx(-1)
    assert keys[0] == (0, 1)
    scores = [s for s, _, _ in pairs]
    assert scores == sorted(scores, reverse=True)
    assert all(type(s) is float and type(i) is int and type(j) is int for s, i, j in pairs)
    assert le.paraphrase_mining_embeddings(emb[:1]) == []
    assert le.paraphrase_mining_embeddings(np.zeros((0, 2), dtype=np.float32)) == []


def test_paraphrase_mining_embeddings_max_pairs_semantics():
    # sentence-transformers 6 keeps the max_pairs best pairs (5.x kept max_pairs - 1 directed candidates, before
    # removing the (j, i) duplicates of (i, j), so it returned fewer).
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    assert [(i, j) for _, i, j in le.paraphrase_mining_embeddings(emb, max_pairs=1)] == [(0, 1)]
    assert [(i, j) for _, i, j in le.paraphrase_mining_embeddings(emb, max_pairs=2)] == [(0, 1), (1, 2)]
    assert len(le.paraphrase_mining_embeddings(emb, max_pairs=3)) == len(le.paraphrase_mining_embeddings(emb)) == 3


def test_paraphrase_mining_calls_encode_with_numpy():
    calls = {}

    class FakeModel:
        def encode(self, sentences, **kwargs):
            calls["sentences"] = sentences
            calls.update(kwargs)
            return np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]], dtype=np.float32)

    out = le.paraphrase_mining(
        FakeModel(), ["a", "b", "c"], batch_size=7, truncate_dim=2, prompt_name="p", prompt="x: ", top_k=1
    )
    assert calls["sentences"] == ["a", "b", "c"]
    assert calls["convert_to_numpy"] is True and calls["batch_size"] == 7
    assert calls["truncate_dim"] == 2 and calls["prompt_name"] == "p" and calls["prompt"] == "x: "
    assert calls["show_progress_bar"] is False
    assert out[0][1:] == [0, 1]


def test_community_detection_hand_computed():
    rng = np.random.default_rng(3)
    centers = np.eye(4, dtype=np.float32) * 10
    sizes = [6, 3, 9, 1]
    emb = np.concatenate([c + 0.05 * rng.standard_normal((s, 4)).astype(np.float32) for c, s in zip(centers, sizes)])
    labels = np.repeat(np.arange(4), sizes)
    comms = le.community_detection(emb, threshold=0.9, min_community_size=3)
    assert [len(c) for c in comms] == [9, 6, 3]
    for c in comms:
        assert all(type(i) is int for i in c)
        assert len(set(labels[c])) == 1
    assert len({i for c in comms for i in c}) == 18  # non-overlapping
    assert le.community_detection(emb, threshold=0.9, min_community_size=4) == comms[:2]
    assert le.community_detection(emb, threshold=0.9, min_community_size=3, batch_size=2) == comms
    assert le.community_detection(np.zeros((0, 4), dtype=np.float32)) == []
    # min_community_size larger than the data is clamped to len(embeddings)
    assert le.community_detection(emb[:2], threshold=0.9, min_community_size=10) == [[0, 1]]


def test_community_detection_central_point_first():
    emb = np.array([[1.0, 0.0], [0.95, 0.31], [0.95, -0.31], [0.0, 1.0]], dtype=np.float32)
    comms = le.community_detection(emb, threshold=0.9, min_community_size=3)
    assert comms == [[0, 1, 2]]


def test_quantize_hand_computed():
    emb = np.array([[0.5, -0.5, 0.0, 1.0, -1.0, 2.0, 0.1, -0.1, 3.0]], dtype=np.float32)
    ub = le.quantize_embeddings(emb, "ubinary")
    assert ub.dtype == np.uint8 and ub.shape == (1, 2)
    assert ub.tolist() == [[0b10010110, 0b10000000]]
    b = le.quantize_embeddings(emb, "binary")
    assert b.dtype == np.int8 and b.tolist() == [[0b10010110 - 128, 0]]
    f = le.quantize_embeddings(emb.astype(np.float64), "float32")
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, emb)
    x = np.array([[0.0, 10.0], [255.0, 520.0], [100.0, 265.0]], dtype=np.float32)  # steps 1 and 2
    u8 = le.quantize_embeddings(x, "uint8")
    assert u8.dtype == np.uint8 and u8.tolist() == [[0, 0], [255, 255], [100, 127]]
    i8 = le.quantize_embeddings(x, "int8")
    assert i8.dtype == np.int8 and i8.tolist() == [[-128, -128], [127, 127], [-28, -1]]
    ranges = np.array([[0.0, 0.0], [510.0, 1020.0]], dtype=np.float32)  # steps 2 and 4
    assert le.quantize_embeddings(x, "uint8", ranges=ranges).tolist() == [[0, 2], [127, 130], [50, 66]]
    # values outside the ranges are clipped
    assert le.quantize_embeddings(x * 3 - 600, "uint8", ranges=ranges).tolist() == [[0, 0], [82, 240], [0, 48]]
    # constant dimension: step falls back to 1
    assert le.quantize_embeddings(np.ones((3, 2), dtype=np.float32), "uint8").tolist() == [[0, 0]] * 3


def test_quantize_errors():
    emb = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="float32.*int8.*uint8.*binary.*ubinary"):
        le.quantize_embeddings(emb, "int4")
    with pytest.raises(ValueError, match="float"):
        le.quantize_embeddings(emb.astype(np.int8), "binary")
    with pytest.raises(ValueError, match="ranges"):
        le.quantize_embeddings(emb, "int8", ranges=np.ones((3, 8)))


def test_module_has_public_api_and_docstrings():
    names = [
        "cos_sim", "dot_score", "pairwise_cos_sim", "pairwise_dot_score", "normalize_embeddings",
        "euclidean_sim", "manhattan_sim", "pairwise_euclidean_sim", "pairwise_manhattan_sim",
        "semantic_search", "paraphrase_mining", "paraphrase_mining_embeddings",
        "community_detection", "quantize_embeddings",
    ]  # fmt: skip
    for name in names:
        assert name in le.__all__, name
        assert callable(getattr(le, name)) and getattr(le, name).__doc__, name


_FORBIDDEN = ("torch", "transformers", "sentence_transformers", "scipy")

_IMPORT_CHECK = textwrap.dedent(
    """
    import importlib.util, sys
    sys.path.insert(0, {root!r})
    mode = {mode!r}
    if mode == "package":
        import lightembed.util as mod
    else:
        spec = importlib.util.spec_from_file_location("lightembed_util_direct", {path!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    assert callable(mod.cos_sim)
    bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
    print("LOADED_VIA", mode)
    print("FORBIDDEN", ",".join(bad))
    """
)


@pytest.mark.parametrize("mode", ["package", "file"])
def test_import_does_not_pull_heavy_modules(mode):
    code = _IMPORT_CHECK.format(root=str(REPO_ROOT), path=str(UTIL_PATH), mode=mode, forbidden=_FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in proc.stdout.splitlines())
    assert "LOADED_VIA" in lines
    assert lines.get("FORBIDDEN", "MISSING") == "", f"heavy modules imported: {lines.get('FORBIDDEN')}"


def test_source_has_no_forbidden_imports():
    files = sorted(UTIL_DIR.glob("*.py"))
    assert UTIL_PATH in files and len(files) > 1
    for path in files:
        src = path.read_text()
        for mod in _FORBIDDEN:
            assert f"import {mod}" not in src and f"from {mod}" not in src, (path.name, mod)


# =========================================================================== #
# Comparison against sentence-transformers
# =========================================================================== #
SHAPES = [
    ((5, 8), (9, 8)),
    ((8,), (9, 8)),  # 1-D query
    ((3, 8), (8,)),  # 1-D corpus side
    ((8,), (8,)),
    ((30, 32), (40, 32)),  # > 25 rows: torch.cdist switches to its matmul path
    ((1, 384), (17, 384)),
    ((0, 8), (4, 8)),
]


@pytest.mark.parametrize("name", MATRIX_FNS)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matrix_fns_match_st(st, name, shapes, dtype):
    rng = np.random.default_rng(_seed(name, shapes, dtype))
    a, b = _rand(rng, shapes[0], dtype), _rand(rng, shapes[1], dtype)
    ours = getattr(le, name)(a, b)
    ref = _np(getattr(st, name)(a, b))
    assert ours.dtype == ref.dtype == dtype
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", MATRIX_FNS)
def test_matrix_fns_match_st_on_lists_and_zeros(st, name):
    a = [[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]
    b = [[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [1.0, -2.0, 0.5]]
    ours = getattr(le, name)(a, b)
    ref = _np(getattr(st, name)(a, b))
    assert ours.dtype == ref.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", PAIRWISE_FNS)
@pytest.mark.parametrize("shape", [(6, 8), (1, 8), (40, 384), (0, 8)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_fns_match_st(st, name, shape, dtype):
    rng = np.random.default_rng(_seed(name, shape, dtype))
    a, b = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    a[:1] = 0  # a zero row where there is one
    ours = getattr(le, name)(a, b)
    ref = _np(getattr(st, name)(a, b))
    assert ours.dtype == ref.dtype == dtype and ours.shape == ref.shape == shape[:1]
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", ["pairwise_dot_score", "pairwise_euclidean_sim", "pairwise_manhattan_sim"])
def test_pairwise_fns_match_st_on_1d(st, name):
    rng = np.random.default_rng(5)
    a, b = _rand(rng, (16,)), _rand(rng, (16,))
    ours = getattr(le, name)(a, b)
    ref = _np(getattr(st, name)(a, b))
    assert ours.shape == ref.shape == ()
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("shape", [(5, 8), (1, 384), (50, 16), (0, 8)], ids=str)
def test_normalize_embeddings_matches_st(st, shape):
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(11)
    x = _rand(rng, shape)
    if shape[0]:
        x[0] = 0
    ours = le.normalize_embeddings(x)
    ref = st.normalize_embeddings(torch.from_numpy(x)).numpy()
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def _assert_search_equal(ours, ref, atol=ATOL):
    assert len(ours) == len(ref)
    for hits, ref_hits in zip(ours, ref):
        assert len(hits) == len(ref_hits)
        np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in ref_hits], atol=atol)
        assert [h["corpus_id"] for h in hits] == [h["corpus_id"] for h in ref_hits]
        for h in hits:
            assert type(h["corpus_id"]) is int and type(h["score"]) is float


@pytest.mark.parametrize(
    "nq,nc,dim,top_k,qcs,ccs",
    [
        (7, 40, 16, 5, 100, 500000),
        (7, 40, 16, 5, 3, 7),  # several query and corpus chunks
        (1, 3, 8, 10, 100, 500000),  # top_k larger than the corpus
        (25, 300, 64, 20, 10, 64),
        (4, 1, 8, 3, 2, 1),
        (3, 0, 8, 4, 100, 500000),  # empty corpus
        (0, 5, 8, 4, 100, 500000),  # no queries
    ],
)
@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
def test_semantic_search_matches_st(st, nq, nc, dim, top_k, qcs, ccs, score):
    rng = np.random.default_rng(nq * 1000 + nc)
    q, c = _rand(rng, (nq, dim)), _rand(rng, (nc, dim))
    kw = dict(top_k=top_k, query_chunk_size=qcs, corpus_chunk_size=ccs)
    ours = le.semantic_search(q, c, score_function=getattr(le, score), **kw)
    ref = st.semantic_search(q, c, score_function=getattr(st, score), **kw)
    _assert_search_equal(ours, ref)


def test_semantic_search_1d_query_matches_st(st):
    rng = np.random.default_rng(2)
    q, c = _rand(rng, (16,)), _rand(rng, (30, 16))
    _assert_search_equal(le.semantic_search(q, c, top_k=4), st.semantic_search(q, c, top_k=4))


def test_semantic_search_ties_match_st_scores(st):
    # Duplicate corpus rows tie; which duplicate wins differs (ST: torch.topk
    # order then largest id across chunks; here: lowest id), scores must agree.
    rng = np.random.default_rng(4)
    base = _rand(rng, (5, 8))
    c = np.concatenate([base, base, base])
    q = _rand(rng, (6, 8))
    for ccs in (500000, 4):
        ours = le.semantic_search(q, c, top_k=7, corpus_chunk_size=ccs)
        ref = st.semantic_search(q, c, top_k=7, corpus_chunk_size=ccs)
        for hits, ref_hits in zip(ours, ref):
            np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in ref_hits], atol=ATOL)
            # the chosen ids are copies of the same base rows
            assert [h["corpus_id"] % 5 for h in hits][:1] == [h["corpus_id"] % 5 for h in ref_hits][:1]
            ids = [h["corpus_id"] for h in hits]
            assert len(set(ids)) == len(ids)


def _assert_pairs_equal(ours, ref):
    assert len(ours) == len(ref)
    ours_map = {(i, j): s for s, i, j in ours}
    ref_map = {(i, j): s for s, i, j in ref}
    assert ours_map.keys() == ref_map.keys()
    for key, s in ours_map.items():
        assert s == pytest.approx(ref_map[key], abs=ATOL)
    scores = [s for s, _, _ in ours]
    assert scores == sorted(scores, reverse=True)
    assert all(i < j for _, i, j in ours)
    assert all(type(s) is float and type(i) is int and type(j) is int for s, i, j in ours)


@pytest.fixture(scope="module")
def st6_paraphrase(tmp_path_factory):
    """sentence-transformers 6.2's paraphrase_mining_embeddings results (tests/st6.py, in its own venv)."""
    from tests.st6_venv import build  # noqa: PLC0415

    return np.load(build(tmp_path_factory.mktemp("para"), "paraphrase") / "paraphrase" / "reference.npz")


@pytest.mark.parametrize("case", range(11))
@pytest.mark.parametrize("score", ["cos_sim", "dot_score", "euclidean_sim"])
def test_paraphrase_mining_embeddings_matches_6_2(st6_paraphrase, case, score):
    from tests.st6 import PARAPHRASE_CASES, paraphrase_embeddings  # noqa: PLC0415

    n, dim, kw = PARAPHRASE_CASES[case]
    ours = le.paraphrase_mining_embeddings(paraphrase_embeddings(n, dim), score_function=getattr(le, score), **kw)
    ref = [[float(s), int(i), int(j)] for s, i, j in st6_paraphrase[f"{case}_{score}"]]
    _assert_pairs_equal(ours, ref)
    if kw == dict(top_k=3, corpus_chunk_size=10):  # 6.x: top_k over the whole corpus, not per chunk
        assert len(ours) <= 3 * n
    if kw == dict(top_k=3, max_pairs=20):  # 6.x: max_pairs pairs, not max_pairs - 1 directed candidates
        assert len(ours) == 20


def test_paraphrase_mining_matches_st(st):
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(9)
    emb = _rand(rng, (25, 12))

    class FakeModel:
        def encode(self, sentences, convert_to_tensor=False, convert_to_numpy=True, truncate_dim=None, **kwargs):
            out = emb[: len(sentences), :truncate_dim]
            return torch.from_numpy(out) if convert_to_tensor else out

    sentences = [f"s{i}" for i in range(25)]
    ours = le.paraphrase_mining(FakeModel(), sentences, top_k=3, truncate_dim=6)
    ref = st.paraphrase_mining(FakeModel(), sentences, top_k=3, truncate_dim=6)
    _assert_pairs_equal(ours, ref)


def _clustered(rng, sizes, dim, noise):
    centers = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    parts = [c + noise * rng.standard_normal((s, dim)).astype(np.float32) for c, s in zip(centers, sizes)]
    emb = np.concatenate(parts)
    return emb[rng.permutation(len(emb))]


@pytest.mark.parametrize(
    "sizes,dim,noise,kw",
    [
        ([30, 12, 5, 3], 16, 0.15, dict(threshold=0.75, min_community_size=10)),
        ([30, 12, 5, 3], 16, 0.15, dict(threshold=0.75, min_community_size=3, batch_size=7)),
        ([120, 40, 8], 32, 0.2, dict(threshold=0.8, min_community_size=5)),  # > 50 members: growing top-k
        ([20, 20, 20], 8, 0.5, dict(threshold=0.6, min_community_size=4, batch_size=16)),  # overlaps
        ([5, 3], 8, 0.1, dict(threshold=0.9, min_community_size=50)),  # min size clamped to n
        ([10], 8, 2.0, dict(threshold=0.99, min_community_size=2)),  # nothing found
    ],
)
def test_community_detection_matches_st(st, sizes, dim, noise, kw):
    rng = np.random.default_rng(sum(sizes) * dim)
    emb = _clustered(rng, sizes, dim, noise)
    ours = le.community_detection(emb, **kw)
    ref = st.community_detection(emb, **kw)
    assert ours == ref
    assert all(type(i) is int for c in ours for i in c)


def test_community_detection_float64_matches_st(st):
    rng = np.random.default_rng(12)
    emb = _clustered(rng, [15, 9, 4], 12, 0.2).astype(np.float64)
    assert le.community_detection(emb, threshold=0.7, min_community_size=4) == st.community_detection(
        emb, threshold=0.7, min_community_size=4
    )


@pytest.fixture(scope="module")
def st6_quantize(tmp_path_factory):
    """sentence-transformers 6.2's quantize_embeddings results (tests/st6.py, in its own venv)."""
    from tests.st6_venv import build  # noqa: PLC0415

    return np.load(build(tmp_path_factory.mktemp("quant"), "quantize") / "quantize" / "reference.npz")


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
@pytest.mark.parametrize("shape", [(50, 16), (3, 13), (1, 384)], ids=str)
@pytest.mark.parametrize("calib", ["self", "calibration", "ranges"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_quantize_matches_6_2(st6_quantize, precision, shape, calib, dtype):
    from tests.st6 import quantize_inputs  # noqa: PLC0415

    emb, kw = quantize_inputs(shape, calib, dtype)
    ref = st6_quantize[f"{shape[0]}x{shape[1]}_{calib}_{dtype}_{precision}"]
    if ref.dtype.kind == "U":  # 6.2 refuses int8/uint8 ranges from one embedding (5.x gave all -128 / 0)
        with pytest.raises(ValueError, match="single embedding"):
            le.quantize_embeddings(emb, precision, **kw)
        return
    ours = le.quantize_embeddings(emb, precision, **kw)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_quantize_list_inputs_match_6_2(st6_quantize, precision):
    from tests.st6 import quantize_inputs  # noqa: PLC0415

    emb, _ = quantize_inputs((50, 16), "self", "float32")
    parts = le.quantize_embeddings([emb[:20], emb[20:23], emb[23:]], precision)  # multi-vector: one range for all
    assert isinstance(parts, list) and len(parts) == 3
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(part, st6_quantize[f"list_{precision}_{i}"])
    rows = le.quantize_embeddings(emb.tolist(), precision)  # a list of rows stays one matrix
    assert rows.dtype == st6_quantize[f"rows_{precision}"].dtype
    np.testing.assert_array_equal(rows, st6_quantize[f"rows_{precision}"])
    assert le.quantize_embeddings([], precision) == []


@pytest.mark.parametrize("sub", ["similarity", "retrieval", "quantization", "misc", "tensor"])
def test_util_is_a_package_with_sentence_transformers_6_submodules(sub):
    """`from sentence_transformers.util.similarity import cos_sim` and the like keep working with lightembed in
    its place: each of 6.2's util submodules exists, and each of its names is provided or refused with a reason."""
    import importlib

    from lightembed.unsupported import TorchOnlyAttributeError

    theirs = importlib.import_module(f"sentence_transformers.util.{sub}")
    ours = importlib.import_module(f"lightembed.util.{sub}")
    names = [n for n in dir(theirs) if not n.startswith("_") and getattr(getattr(theirs, n), "__module__", "") == theirs.__name__]
    assert names
    for name in names:
        try:
            value = getattr(ours, name)
        except TorchOnlyAttributeError as exc:  # refused by name, saying why
            assert f"lightembed.util.{name} is not provided" in str(exc)
        else:
            assert value is getattr(le, name)

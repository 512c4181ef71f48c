"""lightembed-export beside sentence-transformers 6: folders saved by 6.x (plain, residual Dense, Normalize before
Pooling, MultiVectorEncoder, PyLate's legacy ColBERT layout) built from a tiny seeded BERT, exported and verified,
and what the exporter refuses, naming the module.

Needs sentence-transformers >= 6 (the stack scripts/setup.sh installs); the module-type check at the end also runs
on 5.x.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")
sentence_transformers = pytest.importorskip("sentence_transformers")

from lightembed_export import UnsupportedModelError, export_model

ST6 = int(sentence_transformers.__version__.split(".")[0]) >= 6
needs_st6 = pytest.mark.skipif(not ST6, reason="folders saved by sentence-transformers 6 need it to build")
MIN_COS = 0.99999


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dots = (a * b).sum(-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return float(np.min(np.where(norms == 0, 1.0, dots / np.maximum(norms, 1e-300))))


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory) -> Path:
    """A tiny seeded BERT checkpoint (transformers layout) every folder here is built from. Its LayerNorms get
    random weights and biases: with transformers' initial ones (1 and 0) every hidden state has the same norm, and
    normalizing tokens before or after pooling would give the same directions."""
    from transformers import BertModel

    folder = families.bert(tmp_path_factory.mktemp("bert") / "hf", seed=3)
    model = BertModel.from_pretrained(str(folder))
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 1.5 + 0.25)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)
    model.save_pretrained(str(folder))
    return folder


def _save_st6(hf: Path, folder: Path, *middle) -> Path:
    """SentenceTransformer(modules=[Transformer(hf), *middle]) saved by sentence-transformers 6 in `folder`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    torch.manual_seed(11)
    transformer = Transformer(str(hf), max_seq_length=24)
    modules = [transformer, *(m(transformer.get_embedding_dimension()) for m in middle)]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)
    return folder


def _pooling(width: int):
    from sentence_transformers.sentence_transformer.modules import Pooling

    return Pooling(width, "mean")


def _normalize(_width: int):
    from sentence_transformers.base.modules import Normalize

    return Normalize()


def _token_normalize(_width: int):
    from sentence_transformers.base.modules import Normalize

    return Normalize(module_input_name="token_embeddings", module_output_name="token_embeddings")


def _residual_dense(width: int):
    from sentence_transformers.base.modules import Dense

    return Dense(width, width, activation_function=torch.nn.Tanh(), use_residual=True)


FOLDERS = {
    "plain": (_pooling, _normalize),
    "residual_dense": (_pooling, _residual_dense, _normalize),
    "normalize_before_pooling": (_token_normalize, _pooling),
}


def _encode_both(src: Path, out: Path, file_name: str) -> tuple[np.ndarray, np.ndarray]:
    import lightembed

    ref = sentence_transformers.SentenceTransformer(str(src), device="cpu").encode(
        families.TEXTS, batch_size=4, show_progress_bar=False
    )
    got = lightembed.SentenceTransformer(str(out), device="cpu", file_name=file_name).encode(
        families.TEXTS, batch_size=4
    )
    return np.asarray(ref), np.asarray(got)


@needs_st6
@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_folder_saved_by_st6_exports_and_matches(kind, hf_bert, tmp_path):
    src = _save_st6(hf_bert, tmp_path / "st", *FOLDERS[kind])
    assert "sentence_transformers.base.modules" in (src / "modules.json").read_text()  # 6.x module paths
    report = export_model(src, tmp_path / "onnx", optimize=["O2"], quantize=["avx2_qint8"], verbose=False)
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    assert report["exporter"]["fp32_export"] in ("optimum", "torch.onnx.export")
    for name, bar in (("onnx/model.onnx", MIN_COS), ("onnx/model_O2.onnx", 0.9999)):
        ref, got = _encode_both(src, tmp_path / "onnx", name)
        assert _min_cos(ref, got) >= bar, (kind, name)


@needs_st6
def test_normalize_before_pooling_gets_no_fused_pooling(hf_bert, tmp_path):
    """The fused `sentence_embedding` output pools the raw hidden states; with a token-level Normalize before
    Pooling that is not what the model pools, so no file carries it."""
    src = _save_st6(hf_bert, tmp_path / "st", _token_normalize, _pooling)
    assert [entry["pooled_output"] for entry in _exported_files(src, tmp_path / "onnx")] == [None]
    plain = _save_st6(hf_bert, tmp_path / "st2", _pooling)
    assert [entry["pooled_output"] for entry in _exported_files(plain, tmp_path / "onnx2")] == ["mean"]


def _exported_files(src: Path, out: Path) -> list[dict]:
    """lightembed.json's file entries of an fp32 export of `src`, whether or not the runtime reproduces the model
    (that is test_folder_saved_by_st6_exports_and_matches's concern)."""
    from lightembed_export import VerificationError
    from lightembed_export.manifest import read_manifest

    try:
        export_model(src, out, verbose=False)
    except VerificationError:
        pass
    return read_manifest(out)["files"]


@needs_st6
def test_cli_exports_a_st6_folder(hf_bert, tmp_path):
    src = _save_st6(hf_bert, tmp_path / "st", _pooling, _normalize)
    done = subprocess.run(
        [sys.executable, "-m", "lightembed_export", str(src), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((tmp_path / "out" / "lightembed.json").read_text())["verification"]["passed"] is True


# ----- MultiVectorEncoder --------------------------------------------------------------------------------------


def _graph_tokens(out: Path, file_name: str, model, texts: list[str], side: str) -> list[np.ndarray]:
    """The ONNX file's last_hidden_state on the inputs sentence-transformers feeds its Transformer in
    encode_<side>, real tokens only; and (second) the Transformer's own token embeddings there."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / file_name), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def capture(_module, args, kwargs, output):
        features = args[0] if args else kwargs["features"]
        feeds = {n: features[n].numpy() for n in names}
        (hidden,) = session.run(["last_hidden_state"], feeds)
        mask = features["attention_mask"].numpy().astype(bool)
        for row, ref, m in zip(hidden, output["token_embeddings"].numpy(), mask, strict=True):
            pairs.append((ref[m], row[m]))

    handle = model[0].register_forward_hook(capture, with_kwargs=True)
    try:
        (model.encode_query if side == "query" else model.encode_document)(texts, batch_size=4)
    finally:
        handle.remove()
    return pairs


def _check_multi_vector_export(src: Path, out: Path) -> None:
    """Export `src` (a folder sentence-transformers 6 loads as a MultiVectorEncoder) and compare it token by token."""
    import lightembed

    report = export_model(src, out, optimize=["O2"], quantize=["avx2_qint8"], verbose=False)
    assert report["model"]["task"] == "multi-vector" and report["model"]["class"] == "MultiVectorEncoder"
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    assert all(entry["pooled_output"] is None for entry in report["files"])
    fp32 = report["files"][0]
    assert fp32["metrics"]["min_cosine"] >= MIN_COS and fp32["metrics"]["tokens"] > len(families.TEXTS)

    torch_model = sentence_transformers.MultiVectorEncoder(str(src), device="cpu")
    for side in ("document", "query"):
        pairs = _graph_tokens(out, "onnx/model.onnx", torch_model, families.TEXTS, side)
        assert len(pairs) == len(families.TEXTS)
        for ref, got in pairs:
            assert ref.shape == got.shape and _min_cos(ref, got) >= MIN_COS, side
    if hasattr(lightembed, "MultiVectorEncoder"):  # the runtime class: the whole pipeline, and MaxSim
        ours = lightembed.MultiVectorEncoder(str(out), device="cpu")
        queries, documents = families.TEXTS[:3], families.TEXTS[3:]
        ref_q, ref_d = torch_model.encode_query(queries), torch_model.encode_document(documents)
        got_q, got_d = ours.encode_query(queries), ours.encode_document(documents)
        for ref, got in zip([*ref_q, *ref_d], [*got_q, *got_d], strict=True):
            assert ref.shape == got.shape and _min_cos(ref.numpy(), got) >= MIN_COS
        expected = torch_model.similarity(ref_q, ref_d).numpy()
        np.testing.assert_allclose(np.asarray(ours.similarity(got_q, got_d)), expected, rtol=1e-4)


@needs_st6
def test_multi_vector_encoder_exports_token_by_token(hf_bert, tmp_path):
    src = tmp_path / "mve"
    sentence_transformers.MultiVectorEncoder(str(hf_bert), device="cpu").save(str(src))
    assert json.loads((src / "config_sentence_transformers.json").read_text())["model_type"] == "MultiVectorEncoder"
    _check_multi_vector_export(src, tmp_path / "onnx")


def _pylate_folder(hf: Path, folder: Path) -> Path:
    """A ColBERT folder in PyLate 1.x's layout: sentence-transformers 5 module paths, pylate's Dense, and the
    ColBERT settings at the top of config_sentence_transformers.json (model_type "ColBERT")."""
    from safetensors.torch import save_file

    shutil.copytree(hf, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]))  # fmt: skip
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "ColBERT", "query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 12,
        "document_length": 24, "attend_to_expansion_tokens": False, "skiplist_words": ["!", ",", "."],
        "similarity_fn_name": "MaxSim",
    }))  # fmt: skip
    dense = folder / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({
        "in_features": families.HIDDEN, "out_features": 16, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }))  # fmt: skip
    generator = torch.Generator().manual_seed(5)
    save_file(
        {"linear.weight": torch.randn(16, families.HIDDEN, generator=generator) * 0.2}, str(dense / "model.safetensors")
    )
    return folder


@needs_st6
def test_pylate_colbert_folder_exports_as_sentence_transformers_6_loads_it(hf_bert, tmp_path):
    src = _pylate_folder(hf_bert, tmp_path / "pylate")
    torch_model = sentence_transformers.MultiVectorEncoder(str(src), device="cpu")
    assert [type(m).__name__ for m in torch_model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    _check_multi_vector_export(src, tmp_path / "onnx")
    saved = json.loads((tmp_path / "onnx" / "config_sentence_transformers.json").read_text())
    assert saved["model_type"] == "MultiVectorEncoder"  # written back in 6.x's own layout


# ----- refusals ---------------------------------------------------------------------------------------------------


@needs_st6
def test_dense_reading_another_output_is_refused_naming_it(hf_bert, tmp_path):
    from sentence_transformers.base.modules import Dense

    def odd_dense(width: int):
        return Dense(width, width, module_input_name="attention_weights", module_output_name="sentence_embedding")

    src = _save_st6(hf_bert, tmp_path / "st", _pooling, odd_dense)
    with pytest.raises(UnsupportedModelError, match="module 2 is Dense with module_input_name='attention_weights'"):
        export_model(src, tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists()


def test_a_router_without_routes_is_refused_naming_why(hf_bert, tmp_path):
    """Router folders export route by route (tests/test_static.py); one whose router_config.json lists no routes
    is refused with the reason, before anything is written."""
    folder = shutil.copytree(hf_bert, tmp_path / "router")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.router.Router"},
    ]))  # fmt: skip
    with pytest.raises(ValueError, match="lists no routes .* so the Router routes nowhere"):
        export_model(folder, tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists()


def test_module_class_the_installed_release_lacks_is_refused_naming_it(hf_bert, tmp_path):
    """What a 6.x folder gives beside sentence-transformers 5 (its module paths do not exist there): a one-line
    error naming the module and the release that saved the folder, before anything is loaded."""
    folder = shutil.copytree(hf_bert, tmp_path / "future")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Gizmo", "type": "sentence_transformers.base.modules.gizmo.Gizmo"},
    ]))  # fmt: skip
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"sentence_transformers": "9.0.0"}, "model_type": "SentenceTransformer"})
    )
    with pytest.raises(UnsupportedModelError) as refused:
        export_model(folder, tmp_path / "out", verbose=False)
    message = str(refused.value)
    assert (
        "sentence_transformers.base.modules.gizmo.Gizmo" in message
        and "saved by sentence-transformers 9.0.0" in message
    )
    assert refused.value.architecture == "Gizmo" and refused.value.exit_code == 2
    done = subprocess.run(
        [sys.executable, "-m", "lightembed_export", str(folder), "-o", str(tmp_path / "out2")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Gizmo" in done.stderr

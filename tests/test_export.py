"""The exporter (lightembed-export) end to end on tiny random BERTs built here, plus its pure helpers.

One module-scoped export (O1, O2, avx2, avx512_vnni) serves most tests; a Dense variant, an unsupported
architecture and the CLI's error paths get their own small runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("lightembed_export")

from lightembed_export import (  # noqa: E402
    OutputError,
    SourceError,
    UnsupportedModelError,
    VerificationError,
    export_model,
    verify,  # noqa: E402
)
from lightembed_export import quantize as quantizing  # noqa: E402
from lightembed_export import source as sources  # noqa: E402
from lightembed_export.cli import main as cli_main  # noqa: E402
from lightembed_export.manifest import MANIFEST_NAME, read_manifest  # noqa: E402

# The names sentence-transformers' export_dynamic_quantized_onnx_model / export_optimized_onnx_model give.
ST_NAMES = {
    "fp32": "onnx/model.onnx",
    "O1": "onnx/model_O1.onnx",
    "O2": "onnx/model_O2.onnx",
    "avx2": "onnx/model_quint8_avx2.onnx",
    "avx512_vnni": "onnx/model_qint8_avx512_vnni.onnx",
}
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "", "Grüße 🎉 北京", "fast " * 200]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")

_WORDS = (
    "the cat sat on mat a dog ran in park hello world how do i reset my password quick brown fox jumps over lazy "
    "sentence embeddings map texts to vectors so that similar meanings end up close together numbers code date "
    "upper lower mixed case food man is eating long whole text one of"
).split()


def _write_tokenizer(folder: Path) -> None:
    """A small WordPiece BERT tokenizer: specials, ASCII characters (and ## continuations), some words."""
    from transformers import BertTokenizerFast

    chars = [chr(c) for c in range(33, 127)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars if c.isalnum()]
    vocab += [w for w in dict.fromkeys(_WORDS) if w not in vocab]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))


def _tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A seeded 2-layer BERT (hidden 32, 2 heads) with its tokenizer, in transformers layout."""
    from transformers import BertConfig, BertModel

    _write_tokenizer(folder)
    vocab_size = len((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(folder))
    return folder


def _tiny_st(folder: Path, dense: bool = False, seed: int = 0) -> Path:
    """The tiny BERT as a sentence-transformers model: Transformer, mean Pooling, [Dense,] Normalize."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 5.x moved the modules; the old path warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # pragma: no cover - older 5.x
        from sentence_transformers import models

    hf = _tiny_bert(folder.parent / f"{folder.name}-hf", seed)
    transformer = models.Transformer(str(hf), max_seq_length=64)
    modules = [transformer, models.Pooling(32, "mean")]
    if dense:
        torch.manual_seed(seed + 1)
        modules.append(models.Dense(32, 16, activation_function=torch.nn.Tanh()))
    modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)
    shutil.rmtree(hf)
    return folder


def _torch_embeddings(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, batch_size=8, convert_to_numpy=True, show_progress_bar=False)


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(source folder, output folder, returned report) of one export with O1, O2, avx2 and avx512_vnni."""
    root = tmp_path_factory.mktemp("export")
    src = _tiny_st(root / "tiny-st")
    out = root / "out"
    report = export_model(src, out, optimize=["O1", "O2"], quantize=["avx2", "avx512_vnni"], verbose=False)
    return src, out, report


# ----- the main export ---------------------------------------------------------------------------------------


def test_writes_sentence_transformers_names(exported):
    _, out, _ = exported
    for name in ST_NAMES.values():
        assert (out / name).is_file(), name
    # Beside each file, its copy pre-optimized for this CPU (lightembed.preoptimized): graph + weights file.
    expected = [Path(n).name + suffix for n in ST_NAMES.values() for suffix in ("", ".cpu", ".cpu.data")]
    assert sorted(p.name for p in (out / "onnx").iterdir()) == sorted(expected)
    for name in (
        "modules.json",
        "config.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "1_Pooling/config.json",
        MANIFEST_NAME,
    ):
        assert (out / name).is_file(), name
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert (out / modules[2]["path"]).is_dir()


def test_no_torch_weights_in_output(exported):
    _, out, _ = exported
    weights = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert weights == []


def test_manifest_hashes_and_metrics(exported):
    import onnx

    src, out, report = exported
    manifest = read_manifest(out)
    assert manifest == report
    assert manifest["source"] == {"id": str(src), "hub": False, "revision": None, "requested_revision": None}
    assert manifest["exporter"]["name"] == "lightembed-export"
    for package in ("torch", "transformers", "onnxruntime", "sentence-transformers"):
        assert manifest["versions"][package], package
    assert "optimum" in manifest["versions"]  # None where the [optimum] extra is not installed
    assert manifest["exporter"]["fp32_export"] in ("optimum", "torch.onnx.export")
    files = {entry["path"]: entry for entry in manifest["files"]}
    assert sorted(files) == sorted(ST_NAMES.values())
    for path, entry in files.items():
        data = (out / path).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), path
        assert entry["size"] == len(data)
        proto = onnx.load_from_string(data)
        assert entry["ir_version"] == proto.ir_version <= 9, path
        assert entry["opset"] == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        assert set(entry["metrics"]) >= {"min_cosine", "mean_cosine", "max_abs_diff"}
        assert entry["passed"] is True and entry["error"] is None
        assert entry["threshold"]["min"] > 0
    assert files[ST_NAMES["fp32"]]["kind"] == "fp32"
    assert files[ST_NAMES["O2"]]["optimization"]["level"] == "O2"
    quant = files[ST_NAMES["avx512_vnni"]]["quantization"]
    assert (quant["target"], quant["weights_dtype"], quant["is_static"]) == ("avx512_vnni", "QInt8", False)
    assert files[ST_NAMES["avx2"]]["quantization"]["weights_dtype"] == "QUInt8"
    assert manifest["verification"]["probes"] == len(verify.PROBES)


# The bars each kind of file is held to, written out here rather than read back from verify.
EXPECTED_THRESHOLDS = {
    "fp32": ("min_cosine", 0.99999),
    "O1": ("min_cosine", 0.9999),
    "O2": ("min_cosine", 0.9999),
    "avx2": ("mean_cosine", 0.90),
    "avx512_vnni": ("mean_cosine", 0.90),
}


def test_thresholds_and_recorded_metrics_are_what_the_files_give(exported):
    """Each file's recorded drift is what this test measures on the same probes, its bar is the intended one, and
    `passed` is the bar applied to the measurement."""
    from lightembed import SentenceTransformer

    src, out, report = exported
    probes = list(verify.PROBES)
    reference = _torch_embeddings(src, probes).astype(np.float64)
    files = {entry["path"]: entry for entry in report["files"]}
    for name, path in ST_NAMES.items():
        entry = files[path]
        metric, bar = EXPECTED_THRESHOLDS[name]
        assert entry["threshold"]["metric"] == metric and entry["threshold"]["min"] == bar, path
        emb = SentenceTransformer(out, device="cpu", file_name=path).encode(probes, batch_size=verify.BATCH_SIZE)
        emb = emb.astype(np.float64)
        cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))
        measured = {"min_cosine": cos.min(), "mean_cosine": cos.mean(), "max_abs_diff": np.abs(emb - reference).max()}
        recorded = entry["metrics"]
        for key, value in measured.items():
            assert recorded[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (path, key)
        assert recorded["worst_probe"] == int(np.argmin(cos)) or cos.min() > 0.999999, path
        assert entry["passed"] is bool(measured[metric] >= bar) is True, path
    assert verify.FP32_THRESHOLD.note == files[ST_NAMES["fp32"]]["threshold"]["note"]


def test_int8_files_are_nearest_their_own_reference(exported):
    """A baseline a broken file cannot pass: on this tiny random model all texts embed alike (the average
    embedding has mean cosine >= 0.9 to them), so each int8 output must be nearer its own text's reference
    than any other text's, as well as close to it."""
    from lightembed import SentenceTransformer

    src, out, report = exported
    probes = list(verify.PROBES)
    reference = _torch_embeddings(src, probes)
    average = np.tile(reference.mean(axis=0), (len(probes), 1))
    assert verify.compare(reference, average)["mean_cosine"] >= 0.9  # the hole a cosine floor alone leaves
    assert verify.nearest_own(reference, average) <= 2 / len(probes)
    files = {entry["path"]: entry for entry in report["files"]}
    for name in ("avx2", "avx512_vnni"):
        emb = SentenceTransformer(out, device="cpu", file_name=ST_NAMES[name]).encode(probes, batch_size=8)
        assert _nearest_own_here(emb, reference) == 1.0, name
        assert files[ST_NAMES[name]]["metrics"]["nearest_own"] == 1.0, name
        assert _min_cos(emb, reference) >= 0.999, name  # measured 0.99997 on this model


def _nearest_own_here(emb: np.ndarray, reference: np.ndarray) -> float:
    """verify.nearest_own, written again here: the fraction of rows nearest (by cosine) their own reference row."""
    a = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    sims = a.astype(np.float64) @ b.astype(np.float64).T
    return float(np.mean([sims[i, i] >= sims[i].max() - 1e-6 for i in range(len(sims))]))


def test_an_int8_file_that_ignores_its_input_fails_verification(tmp_path, monkeypatch):
    """The exporter's own int8 check: an output that is the average embedding clears the mean-cosine floor on a
    tiny random model, so it must fail on nearest_own instead."""
    src = _tiny_st(tmp_path / "st", seed=11)
    real = verify.runtime_embeddings

    def ignores_input(model_dir, file_name, probes=verify.PROBES):
        emb = real(model_dir, file_name, probes)
        return np.tile(emb.mean(axis=0), (len(emb), 1)) if "int8" in file_name else emb

    monkeypatch.setattr(verify, "runtime_embeddings", ignores_input)
    with pytest.raises(VerificationError) as info:
        export_model(src, tmp_path / "out", quantize=["avx512_vnni"], verbose=False)
    assert info.value.failures == [ST_NAMES["avx512_vnni"]]
    entry = {f["path"]: f for f in read_manifest(tmp_path / "out")["files"]}[ST_NAMES["avx512_vnni"]]
    assert entry["metrics"]["mean_cosine"] >= verify.INT8_THRESHOLD.value  # the cosine floor alone would pass it
    assert entry["metrics"]["nearest_own"] < verify.NEAREST_OWN_MIN and "nearest their own" in entry["error"]


def test_sentence_transformers_onnx_backend_loads_output(exported):
    """sentence-transformers' own backend="onnx" (or, without optimum, its stand-in: tests/st_onnx.py)."""
    from sentence_transformers import SentenceTransformer

    from tests.st_onnx import onnx_backed

    src, out, _ = exported
    reference = _torch_embeddings(src, TEXTS)
    for name, bar in ((ST_NAMES["O2"], 0.9999), (ST_NAMES["avx512_vnni"], 0.999)):  # int8 measured 0.99997
        model = onnx_backed(SentenceTransformer, src, out, name)
        emb = model.encode(TEXTS, batch_size=8, convert_to_numpy=True, show_progress_bar=False)
        assert emb.shape == reference.shape
        assert _min_cos(emb, reference) >= bar, name
        assert _nearest_own_here(emb, reference) == 1.0, name  # not just close: closest to its own text


def test_every_written_file_carries_the_fused_pooling_and_encode_uses_it(exported):
    """README: every embedding file the exporter writes carries the pooling (a `sentence_embedding` output)."""
    import onnx

    from lightembed import SentenceTransformer
    from lightembed.pooling import POOLED_METADATA_KEY, POOLED_OUTPUT
    from tests.graph_recorder import record

    _, out, report = exported
    assert sorted(f["path"] for f in report["files"]) == sorted(ST_NAMES.values())
    for entry in report["files"]:
        path = entry["path"]
        proto = onnx.load(str(out / path), load_external_data=False)
        assert POOLED_OUTPUT in [o.name for o in proto.graph.output], path
        assert {p.key: p.value for p in proto.metadata_props}.get(POOLED_METADATA_KEY) == "mean", path
        assert entry["pooled_output"] == "mean", path
        model = SentenceTransformer(out, device="cpu", file_name=path)
        assert model.has_pooled_output and model.use_pooled_output and model.runtime_info.pooled_output, path
        calls = record(model).calls
        fused = model.encode(TEXTS, batch_size=2)
        assert calls and {c.output for c in calls} == {POOLED_OUTPUT}, path  # the fused path is what ran
        model.use_pooled_output = False
        calls.clear()
        np.testing.assert_allclose(fused, model.encode(TEXTS, batch_size=2), rtol=1e-5, atol=1e-5, err_msg=path)
        assert POOLED_OUTPUT not in {c.output for c in calls}


def test_lightembed_runtime_loads_output(exported):
    from lightembed import SentenceTransformer

    src, out, _ = exported
    reference = _torch_embeddings(src, TEXTS)
    for name in (ST_NAMES["fp32"], ST_NAMES["O1"]):
        emb = SentenceTransformer(str(out), device="cpu", file_name=name).encode(TEXTS, batch_size=8)
        assert emb.dtype == np.float32 and emb.shape == reference.shape
        assert _min_cos(emb, reference) >= 0.9999, name


def test_output_in_the_way(exported, tmp_path):
    src, out, _ = exported
    with pytest.raises(OutputError) as info:
        export_model(src, out, verbose=False)
    assert "not empty" in str(info.value) and info.value.exit_code == 2
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="no previous export"):
        export_model(src, tmp_path, overwrite=True, verbose=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_export_is_deterministic(exported, tmp_path):
    src, _, report = exported
    again = export_model(
        src, tmp_path / "again", optimize=["O1", "O2"], quantize=["avx2", "avx512_vnni"], verbose=False
    )
    assert [(f["path"], f["sha256"]) for f in again["files"]] == [(f["path"], f["sha256"]) for f in report["files"]]


def test_every_cpu_file_gets_a_checked_preoptimized_copy_that_the_runtime_loads(exported):
    import lightembed
    from lightembed import machine
    from lightembed.graphs import preoptimized

    _, out, report = exported
    for entry in report["files"]:
        record = entry[preoptimized.RECORD]
        assert record["passed"] is True and record["made_for"] == machine.onnxruntime_build(), entry["path"]
        assert record["metrics"]["max_abs_diff"] <= 1e-6
        model = lightembed.SentenceTransformer(out, device="cpu", file_name=entry["path"])
        assert model.runtime_info.preoptimized_file == entry["path"] + ".cpu"


def test_no_preoptimize_writes_no_copy(tmp_path):
    src = _tiny_st(tmp_path / "src")
    report = export_model(src, tmp_path / "out", verbose=False, preoptimize=False)
    assert not list((tmp_path / "out").rglob("*.cpu*"))
    assert "cpu_preoptimized" not in report["files"][0]


# ----- variants ----------------------------------------------------------------------------------------------


def test_dense_weights_are_copied_as_safetensors(tmp_path):
    src = _tiny_st(tmp_path / "dense-st", dense=True, seed=3)
    out = tmp_path / "out"
    report = export_model(src, out, verbose=False)
    dense = [m for m in json.loads((out / "modules.json").read_text()) if m["type"].endswith(".Dense")]
    assert len(dense) == 1
    folder = out / dense[0]["path"]
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert (folder / "model.safetensors").read_bytes() == (src / dense[0]["path"] / "model.safetensors").read_bytes()
    assert not (out / "model.safetensors").exists()
    assert report["model"]["embedding_dimension"] == 16
    assert report["files"][0]["passed"] and report["files"][0]["metrics"]["min_cosine"] >= 0.99999


def test_o4_on_cpu_writes_an_fp16_file_that_loads_and_verifies(tmp_path):
    """README: O1-O4. Without CUDA, O4 applies the fusions and the fp16 conversion (no GPU graph pass), keeps
    float32 inputs and outputs, and is verified on CPU at its looser bar; lightembed and sentence-transformers'
    ONNX backend both load it."""
    import onnx
    from onnx import TensorProto

    from lightembed import SentenceTransformer
    from lightembed.pooling import POOLED_OUTPUT

    src = _tiny_st(tmp_path / "st", seed=4)
    out = tmp_path / "out"
    report = export_model(src, out, optimize=["O4"], verbose=False)
    entry = {f["path"]: f for f in report["files"]}["onnx/model_O4.onnx"]
    assert entry["kind"] == "optimized" and entry["optimization"]["level"] == "O4"
    assert entry["optimization"]["fp16"] is True and entry["optimization"]["ort_gpu_graph_pass"] is False
    assert entry["threshold"] == {"metric": "min_cosine", "min": 0.999, "note": verify.FP16_THRESHOLD.note}
    assert entry["passed"] is True and entry["pooled_output"] == "mean"
    proto = onnx.load(str(out / "onnx" / "model_O4.onnx"))
    weight_types = {init.data_type for init in proto.graph.initializer if len(init.dims) == 2}
    assert weight_types == {TensorProto.FLOAT16}  # the matrices really are fp16
    outputs = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert outputs[POOLED_OUTPUT] == TensorProto.FLOAT

    reference = _torch_embeddings(src, TEXTS)
    model = SentenceTransformer(out, device="cpu", file_name="onnx/model_O4.onnx")
    assert model.use_pooled_output
    emb = model.encode(TEXTS, batch_size=8)
    assert emb.dtype == np.float32 and _min_cos(emb, reference) >= 0.999
    assert np.abs(emb - reference).max() > 1e-5  # fp16 rounding shows: not the fp32 file under another name
    assert _nearest_own_here(emb, reference) == 1.0


def test_plain_transformers_folder_gets_mean_pooling(tmp_path):
    src = _tiny_bert(tmp_path / "hf", seed=5)
    out = tmp_path / "out"
    report = export_model(src, out, verbose=False)
    assert report["model"]["modules"] == ["Transformer", "Pooling"]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens") is True
    assert report["verification"]["passed"]


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    from transformers import FNetConfig, FNetModel

    folder = tmp_path / "fnet"
    torch.manual_seed(0)
    FNetModel(FNetConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, intermediate_size=32)).save_pretrained(
        str(folder)
    )
    with pytest.raises(UnsupportedModelError) as info:
        export_model(folder, tmp_path / "out", verbose=False)
    assert "FNetModel" in str(info.value) and info.value.model_type == "fnet"
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()

    result = _run_cli(str(folder), "-o", str(tmp_path / "out2"))
    assert result.returncode == 2
    assert "FNetModel" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_failed_verification_raises_and_records(tmp_path, monkeypatch):
    src = _tiny_st(tmp_path / "st", seed=7)
    out = tmp_path / "out"
    monkeypatch.setattr(verify, "FP32_THRESHOLD", verify.Threshold("min_cosine", 1.5, "impossible"))
    with pytest.raises(VerificationError) as info:
        export_model(src, out, verbose=False)
    assert info.value.failures == ["onnx/model.onnx"] and info.value.exit_code == 1
    manifest = read_manifest(out)
    assert manifest["verification"]["passed"] is False and manifest["files"][0]["passed"] is False


def test_failed_export_leaves_no_half_written_folder(exported, tmp_path, monkeypatch):
    from lightembed_export import onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(onnx_export, "export_transformer", broken)
    src, _, _ = exported
    with pytest.raises(RuntimeError, match="simulated"):
        export_model(src, tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists()


# ----- CLI ---------------------------------------------------------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("lightembed-export")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lightembed_export"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=300, env=env)


def test_cli_help():
    result = _run_cli("--help")
    assert result.returncode == 0
    for option in ("--optimize", "--quantize", "--revision", "-o", "--task", "--calibration-file"):
        assert option in result.stdout


def test_cli_on_a_folder_that_is_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    result = _run_cli(str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "is not a model folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_main_returns_exit_codes(tmp_path, capsys):
    assert cli_main([str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert cli_main(["x", "-o", "y", "--optimize", "O9"]) == 2
    assert cli_main(["x", "-o", "y", "--quantize", "sse4"]) == 2
    assert cli_main(["x", "-o", "y", "--task", "token-classification"]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert (
        cli_main([str(tmp_path), "-o", str(tmp_path / "o"), "--quantize", "static", "--calibration-file", str(empty)])
        == 2
    )
    assert "no non-blank lines" in capsys.readouterr().err


# ----- helpers without an export -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "flags", "target"),
    [
        ("aarch64", None, "arm64"),
        ("arm64", None, "arm64"),
        ("x86_64", {"avx2", "avx512f", "avx512bw", "avx512vnni"}, "avx512_vnni"),
        ("x86_64", {"avx2", "avx512f", "avx512bw"}, "avx512"),
        ("x86_64", {"avx", "avx2", "fma"}, "avx2_qint8"),  # AVX2 only: u8 x s8 (model_qint8_avx2.onnx)
        ("x86_64", {"sse4_2"}, "avx2"),
    ],
)
def test_detect_cpu_target(machine, flags, target):
    assert quantizing.detect_cpu_target(machine, flags)[0] == target


@pytest.mark.parametrize(
    ("machine", "flags_line", "target", "file_name"),
    [
        ("x86_64", "fpu sse4_2 avx avx2 fma bmi2", "avx2_qint8", "model_qint8_avx2.onnx"),
        ("x86_64", "fpu avx2 avx512f avx512bw avx512_vnni", "avx512_vnni", "model_qint8_avx512_vnni.onnx"),
        ("x86_64", "fpu avx2 avx512f avx512bw", "avx512", "model_qint8_avx512.onnx"),
        ("x86_64", "fpu sse4_2", "avx2", "model_quint8_avx2.onnx"),
        ("aarch64", "fp asimd", "arm64", "model_qint8_arm64.onnx"),
    ],
)
def test_auto_picks_by_cpu_flags(monkeypatch, tmp_path, machine, flags_line, target, file_name):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags_line}\n")
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(quantizing.platform, "machine", lambda: machine)
    (chosen,) = quantizing.resolve_targets(["auto"])
    assert chosen.name == target and chosen.requested_as == ("auto",) and chosen.reason.startswith("auto: ")
    assert quantizing.file_name(chosen.name) == file_name


def test_avx2_qint8_is_avx2_with_int8_weights():
    avx2 = quantizing.quantization_config("avx2")
    qint8 = quantizing.quantization_config("avx2_qint8")
    assert (avx2.weights_dtype.name, qint8.weights_dtype.name) == ("QUInt8", "QInt8")
    assert qint8.activations_dtype.name == "QUInt8" and not qint8.is_static
    assert qint8.per_channel == avx2.per_channel and qint8.operators_to_quantize == avx2.operators_to_quantize


def test_resolve_targets_merges_auto(monkeypatch):
    monkeypatch.setattr(quantizing, "detect_cpu_target", lambda: ("avx2", "x86-64 CPU with AVX2"))
    targets = quantizing.resolve_targets(["avx2", "avx512", "auto", "avx512"])
    assert [t.name for t in targets] == ["avx2", "avx512"]
    assert targets[0].requested_as == ("avx2", "auto") and "auto" in targets[0].reason
    with pytest.raises(ValueError, match="sse4"):
        quantizing.resolve_targets(["sse4"])


def test_quantized_file_names_follow_sentence_transformers():
    names = {target: quantizing.file_name(target) for target in quantizing.DYNAMIC_TARGETS}
    assert names == {
        "avx2": "model_quint8_avx2.onnx",  # avx2's weights are uint8
        "avx512": "model_qint8_avx512.onnx",
        "avx512_vnni": "model_qint8_avx512_vnni.onnx",
        "arm64": "model_qint8_arm64.onnx",
    }
    # the same {weights dtype}_{config} rule for the two additions
    assert quantizing.file_name("avx2_qint8") == "model_qint8_avx2.onnx"
    assert quantizing.file_name("static") == "model_qint8_static.onnx"
    assert quantizing.file_name("rowwise") == "model_qint8_rowwise.onnx"
    assert quantizing.file_name("weights") == "model_qint8_weights.onnx"
    assert set(quantizing.TARGETS) == set(quantizing.DYNAMIC_TARGETS) | {"avx2_qint8", "static", "rowwise", "weights"}


# What optimum 2.1's AutoQuantizationConfig.<target>(is_static=False) and AutoOptimizationConfig.O<n>() set: the
# recipes the exporter runs with onnxruntime alone. Checked against optimum itself where it is installed.
OPTIMUM_DYNAMIC = {
    "weights_dtype": {"avx2": "QUInt8", "avx512": "QInt8", "avx512_vnni": "QInt8", "arm64": "QInt8"},
    "fields": {"activations_dtype": "QUInt8", "per_channel": True, "reduce_range": False, "weights_symmetric": True,
               "activations_symmetric": False, "mode": "IntegerOps", "format": "QOperator"},
}  # fmt: skip
OPTIMUM_LEVELS = {
    "O1": (1, False, False, False),
    "O2": (2, True, False, False),
    "O3": (2, True, True, False),
    "O4": (2, True, True, True),
}
"""level -> (optimization_level, enable_transformers_specific_optimizations, enable_gelu_approximation, fp16)."""


def _optimum_or_none():
    from lightembed_export.onnx_export import optimum_available

    if not optimum_available():
        return None
    from optimum.onnxruntime import configuration

    return configuration


def test_dynamic_int8_and_levels_are_optimums_recipes():
    from lightembed_export import optimize as optimizing

    optimum = _optimum_or_none()
    for target, dtype in OPTIMUM_DYNAMIC["weights_dtype"].items():
        ours = quantizing.quantization_config(target)
        got = {key: getattr(ours, key) for key in OPTIMUM_DYNAMIC["fields"]}
        got = {key: getattr(value, "name", value) for key, value in got.items()}
        assert (ours.weights_dtype.name, got) == (dtype, OPTIMUM_DYNAMIC["fields"]), target
        assert not ours.is_static and "MatMul" in ours.operators_to_quantize and "Gather" in ours.operators_to_quantize
        if optimum is not None:
            theirs = getattr(optimum.AutoQuantizationConfig, target)(is_static=False)
            assert theirs.weights_dtype.name == dtype
            assert {k: getattr(getattr(theirs, k), "name", getattr(theirs, k)) for k in got} == got
            assert [getattr(o, "value", o) for o in theirs.operators_to_quantize] == ours.operators_to_quantize
    for level, expected in OPTIMUM_LEVELS.items():
        settings = optimizing.LEVEL_SETTINGS[level]
        fields = ("optimization_level", "enable_transformers_specific_optimizations", "enable_gelu_approximation",
                  "fp16")  # fmt: skip
        assert tuple(getattr(settings, f) for f in fields) == expected, level
        assert settings.optimize_for_gpu == (level == "O4")
        if optimum is not None:
            theirs = optimum.AutoOptimizationConfig.with_optimization_level(level)
            assert tuple(getattr(theirs, f) for f in fields) == expected, level
            assert theirs.optimize_for_gpu == settings.optimize_for_gpu
            assert theirs.disable_embed_layer_norm_fusion  # the one fusion optimum turns off (ours too)


def test_hub_source_records_the_commit(tmp_path, monkeypatch):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "snapshots" / commit
    snapshot.mkdir(parents=True)
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def model_info(self, repo_id, revision=None):
            calls["info"] = (repo_id, revision)
            files = ["model.safetensors", "pytorch_model.bin", "2_Dense/pytorch_model.bin", "onnx/model.onnx"]
            return SimpleNamespace(sha=commit, siblings=[SimpleNamespace(rfilename=f) for f in files])

    def fake_download(repo_id, revision=None, cache_dir=None, token=None, ignore_patterns=None):
        calls["download"] = (repo_id, revision, ignore_patterns)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    resolved = sources.resolve_source("org/model", revision="v1.0")
    assert resolved.from_hub and resolved.revision == commit and resolved.requested_revision == "v1.0"
    assert resolved.path == snapshot
    assert calls["info"] == ("org/model", "v1.0")
    repo, revision, ignored = calls["download"]
    assert (repo, revision) == ("org/model", commit)
    assert "pytorch_model.bin" in ignored and "2_Dense/pytorch_model.bin" not in ignored and "onnx/*" in ignored


def test_hub_source_offline_uses_the_cache(tmp_path, monkeypatch):
    import huggingface_hub

    commit = "fedcba9876543210fedcba9876543210fedcba98"
    snapshot = tmp_path / "snapshots" / commit
    snapshot.mkdir(parents=True)

    class OfflineApi:
        def __init__(self, token=None):
            pass

        def model_info(self, repo_id, revision=None):
            raise ConnectionError("no network")

    def cached_only(repo_id, revision=None, cache_dir=None, token=None, local_files_only=False, **kwargs):
        if not local_files_only:
            raise AssertionError("must not download while offline")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_only)
    resolved = sources.resolve_source("org/model")
    assert (resolved.path, resolved.revision, resolved.from_hub) == (snapshot, commit, True)

    class MissingApi(OfflineApi):
        def model_info(self, repo_id, revision=None):
            raise type("RepositoryNotFoundError", (Exception,), {})("404")

    monkeypatch.setattr(huggingface_hub, "HfApi", MissingApi)
    with pytest.raises(SourceError, match="RepositoryNotFoundError"):
        sources.resolve_source("org/missing")


def test_local_source_errors(tmp_path):
    with pytest.raises(SourceError, match="only"):
        sources.resolve_source(str(tmp_path), revision="main")
    with pytest.raises(SourceError, match="no such model folder"):
        sources.resolve_source("./does/not/exist")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError, match="is a file"):
        sources.resolve_source(str(tmp_path / "file.txt"))


def test_make_loadable_lowers_ir_and_drops_unused_opsets(tmp_path):
    import onnx
    from lightembed_export.onnx_files import MAX_IR_VERSION, make_loadable
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [
        helper.make_opsetid("", 17),
        helper.make_opsetid("ai.onnx.ml", 5),
        helper.make_opsetid("com.microsoft", 1),
    ]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 14
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    changes = make_loadable(path)
    assert changes == {"dropped_unused_opsets": {"ai.onnx.ml": 5, "com.microsoft": 1}, "ir_version_written": 14}
    rewritten = onnx.load(str(path))
    assert rewritten.ir_version == MAX_IR_VERSION
    assert [(o.domain, o.version) for o in rewritten.opset_import] == [("", 17)]
    assert make_loadable(path) == {}


def test_probe_set():
    assert 12 <= len(verify.PROBES) <= 20
    assert "" in verify.PROBES
    assert any(len(p.split()) > 600 for p in verify.PROBES)  # past any max_seq_length
    assert any(any(ord(c) > 0x2E80 for c in p) for p in verify.PROBES)  # CJK
    assert any(any(ord(c) > 0x1F000 for c in p) for p in verify.PROBES)  # emoji


def test_compare_metrics():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    same = verify.compare(ref, ref.copy())
    assert same["min_cosine"] == pytest.approx(1.0) and same["max_abs_diff"] == 0.0
    off = verify.compare(ref, np.array([[1.0, 1.0], [0.0, 2.0]], dtype=np.float32))
    assert off["min_cosine"] == pytest.approx(2**-0.5) and off["worst_probe"] == 0
    assert off["mean_cosine"] == pytest.approx((1 + 2**-0.5) / 2)
    broken = verify.compare(ref, np.full_like(ref, np.nan))
    assert np.isnan(broken["min_cosine"]) and np.isnan(broken["nearest_own"])
    three = np.array([[1.0, 0.1], [0.6, 0.8], [0.1, 1.0]])
    assert verify.compare(three, three * 2)["nearest_own"] == 1.0
    assert verify.compare(three, np.tile(three.mean(axis=0), (3, 1)))["nearest_own"] == pytest.approx(1 / 3)
    assert verify.nearest_own(three, three[[1, 0, 2]]) == pytest.approx(1 / 3)  # rows swapped
    assert verify.nearest_own(np.vstack([three, three[:1]]), np.vstack([three, three[:1]])) == 1.0  # duplicates


def test_torch_onnx_export_path_exports_and_verifies(tmp_path, monkeypatch):
    """The fp32 export without optimum (the default beside sentence-transformers 6; also what a 5.x install
    without the [optimum] extra runs): traced with torch.onnx.export, dynamic axes, verified against torch."""
    import onnx

    from lightembed import SentenceTransformer
    from lightembed_export import onnx_export

    monkeypatch.setattr(onnx_export, "optimum_available", lambda: False)
    src = _tiny_st(tmp_path / "st", seed=5)
    report = export_model(src, tmp_path / "out", optimize=["O2"], quantize=["avx2"], verbose=False)
    assert report["exporter"]["fp32_export"] == "torch.onnx.export"
    assert all(entry["passed"] for entry in report["files"]), report["files"]
    graph = onnx.load(str(tmp_path / "out" / "onnx" / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output]
    assert dims[0] == ["batch_size", "sequence_length", 32]
    got = SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(TEXTS, batch_size=2)
    assert _min_cos(got, _torch_embeddings(src, TEXTS)) >= 0.99999

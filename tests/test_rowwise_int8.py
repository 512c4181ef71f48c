"""--quantize rowwise: per-token int8 (a scale per token row, per-channel s8 weights), batch-invariant by
construction, written and verified by the exporter, run by the runtime like any int8 file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

TEXTS = ["A man is eating food.", "hello", "Ünïcödé 🎉", "", "a much longer text about many things " * 12]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from lightembed_export import export_model

    from tests.test_export import _tiny_st

    root = tmp_path_factory.mktemp("rowwise")
    out = root / "out"
    export_model(_tiny_st(root / "tiny-st"), out, quantize=["rowwise", "avx512_vnni"], verbose=False)
    return out


def test_exporter_writes_and_records_the_rowwise_file(exported):
    entries = {e["path"]: e for e in json.loads((exported / "lightembed.json").read_text())["files"]}
    entry = entries["onnx/model_qint8_rowwise.onnx"]
    assert entry["passed"] and entry["quantization"]["target"] == "rowwise"
    assert entry["quantization"]["batch_invariant"] is True
    ops = [n.op_type for n in onnx.load(str(exported / "onnx" / "model_qint8_rowwise.onnx")).graph.node]
    # onnxruntime's fused int8 GEMM per MatMul, one per-axis QuantizeLinear per distinct activation (a block's
    # query, key and value share theirs)
    assert ops.count("MatMulIntegerToFloat") == entry["quantization"]["quantized_nodes"] > 0
    assert 0 < ops.count("QuantizeLinear") < ops.count("MatMulIntegerToFloat")
    assert "DynamicQuantizeLinear" not in ops  # no batch-wide activation scale anywhere
    # closer to fp32 than the per-tensor dynamic file on the exporter's own probes
    dynamic = entries["onnx/model_qint8_avx512_vnni.onnx"]["metrics"]["mean_cosine"]
    assert entry["metrics"]["mean_cosine"] >= min(dynamic, 0.999)


def test_rowwise_is_batch_invariant_and_near_fp32(exported):
    from lightembed import SentenceTransformer

    fp32 = SentenceTransformer(exported, backend="onnx")
    model = SentenceTransformer(exported, backend="onnx", file_name="onnx/model_qint8_rowwise.onnx")
    assert model.precision == "int8"
    batched = model.encode(TEXTS)
    alone = np.stack([model.encode(t) for t in TEXTS])
    beside_long = np.stack([model.encode([t, TEXTS[-1] * 3])[0] for t in TEXTS])
    for other in (alone, beside_long):
        assert (batched * other).sum(1).min() >= 0.9999
    assert (batched * fp32.encode(TEXTS)).sum(1).min() >= 0.99


def test_rowwise_keeps_named_nodes_fp32(tmp_path, exported):
    from lightembed_export.rowwise import quantize_rowwise, weight_matmuls

    src = exported / "onnx" / "model.onnx"
    names = weight_matmuls(onnx.load(str(src)))
    done = quantize_rowwise(src, tmp_path / "q.onnx", keep_fp32={names[0]})
    assert done["kept"] == [names[0]] and sorted(done["quantized"]) == sorted(names[1:])
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert [n.op_type for n in graph.node].count("MatMulIntegerToFloat") == len(names) - 1


def test_plain_rowwise_uses_standard_ops_only_and_gives_the_same_vectors(tmp_path, exported):
    from lightembed_export.rowwise import quantize_rowwise

    from lightembed import SentenceTransformer

    src = exported / "onnx" / "model.onnx"
    quantize_rowwise(src, exported / "onnx" / "plain.onnx", plain=True)
    model = onnx.load(str(exported / "onnx" / "plain.onnx"))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"} and "MatMulInteger" in {n.op_type for n in model.graph.node}
    plain = SentenceTransformer(exported, backend="onnx", file_name="onnx/plain.onnx", verify=False).encode(TEXTS)
    fused = SentenceTransformer(exported, backend="onnx", file_name="onnx/model_qint8_rowwise.onnx").encode(TEXTS)
    assert (plain * fused).sum(1).min() >= 0.9999  # one recipe, two spellings (rounding ties may differ)


@pytest.mark.parametrize("plain", [False, True], ids=["fused", "plain"])
def test_a_rows_scale_ignores_the_other_rows(tmp_path, plain):
    """One row with 1000x larger activations beside it leaves a row's result bit-identical (a per-tensor scale
    would wipe out its resolution), and the int8 result stays within int8 error of the fp32 MatMul."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lightembed_export.rowwise import quantize_rowwise

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 16])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "f.onnx"))
    assert quantize_rowwise(tmp_path / "f.onnx", tmp_path / "q.onnx", plain=plain)["quantized"] == ["mm"]
    run = ort.InferenceSession(str(tmp_path / "q.onnx")).run
    x = rng.normal(size=(1, 3, 64)).astype(np.float32)
    loud = 1000 * rng.normal(size=(1, 3, 64)).astype(np.float32)
    (alone,) = run(None, {"x": x})
    (together,) = run(None, {"x": np.concatenate([x, loud])})
    (side_by_side,) = run(None, {"x": np.concatenate([x, loud], axis=1)})
    np.testing.assert_array_equal(together[:1], alone)
    np.testing.assert_array_equal(side_by_side[:, :3], alone)
    exact = x @ weight
    assert np.abs(alone - exact).max() <= 0.05 * np.abs(exact).max()


# ----- --quantize weights: int8 weights, float activations, for OpenVINO ----------------------------------------


@pytest.fixture(scope="module")
def weights_exported(tmp_path_factory):
    from lightembed_export import export_model

    from tests.test_export import _tiny_st

    root = tmp_path_factory.mktemp("weights")
    out = root / "out"
    export_model(_tiny_st(root / "tiny-st"), out, quantize=["weights"], verbose=False)
    return out


WEIGHTS_FILE = "onnx/model_qint8_weights.onnx"


def test_exporter_writes_int8_weights_behind_dequantize(weights_exported):
    from onnx import numpy_helper

    entries = {e["path"]: e for e in json.loads((weights_exported / "lightembed.json").read_text())["files"]}
    entry = entries[WEIGHTS_FILE]
    assert entry["passed"] and entry["quantization"]["target"] == "weights"
    model = onnx.load(str(weights_exported / WEIGHTS_FILE))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear") == entry["quantization"]["quantized_nodes"] > 0
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops  # activations stay float
    int8 = [i for i in model.graph.initializer if numpy_helper.to_array(i).dtype == np.int8 and i.name.endswith("_q")]
    assert len(int8) == entry["quantization"]["quantized_nodes"]
    # the exporter measured it on OpenVINO too (openvino is installed wherever the tests run), at the file's own bar
    record = entry["openvino"]
    assert record["metrics"]["min_cosine"] >= entry["metrics"]["min_cosine"] - 0.001 and record["passed"] is True
    texts = record["texts_check"]
    assert texts["against"] == "onnx/model.onnx on onnxruntime" and texts["texts"] > 50
    assert texts["min_cosine"] >= texts["onnxruntime_min_cosine"] - 0.001


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_weights_are_batch_invariant_and_near_fp32(weights_exported, backend):
    from lightembed import SentenceTransformer

    fp32 = SentenceTransformer(weights_exported, backend="onnx")
    model = SentenceTransformer(weights_exported, backend=backend, file_name=WEIGHTS_FILE)
    assert model.precision == "int8"
    batched = model.encode(TEXTS)
    alone = np.stack([model.encode(t) for t in TEXTS])
    assert (batched * alone).sum(1).min() >= 0.9999
    assert (batched * fp32.encode(TEXTS)).sum(1).min() >= 0.99


def test_no_options_runs_the_weights_file_on_openvino_on_amx_at_its_own_bar(weights_exported, monkeypatch, tmp_path):
    import shutil

    from lightembed import SentenceTransformer
    from lightembed import machine
    from lightembed.graphs import openvino as ovo
    from lightembed.graphs import policy as ovb

    folder = tmp_path / "m"
    shutil.copytree(weights_exported, folder)
    manifest = json.loads((folder / "lightembed.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == WEIGHTS_FILE)
    entry["metrics"]["min_cosine"] = 0.995  # as on a real model: int8 drift well below near-lossless
    bar = 0.995 - ovb.INT8_MARGIN
    assert ovb.auto_bar(entry) == bar < ovb.AUTO_MIN_COSINE  # held to its own drift, not the near-lossless bar

    def record(min_cosine: float) -> None:  # the measurement as an AMX machine would have written it
        entry["openvino"] = {
            "inference_precision": "bf16",
            "metrics": {"min_cosine": min_cosine},
            # on the calibration texts: within INT8_MARGIN of what the file keeps on onnxruntime
            "texts_check": {"texts": 56, "min_cosine": 0.9985, "onnxruntime_min_cosine": 0.9980},
            "passed": True,
        }
        (folder / "lightembed.json").write_text(json.dumps(manifest))

    monkeypatch.delenv("LIGHTEMBED_BACKEND", raising=False)
    monkeypatch.setenv(ovo.ENV_CACHE, str(tmp_path / "ov-cache"))
    monkeypatch.setattr(machine, "cpu_flags", lambda *a: frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"}))
    record(bar + 0.0005)
    model = SentenceTransformer(folder, file_name=WEIGHTS_FILE)
    assert model.get_backend() == "openvino", model.backend_reason
    record(bar - 0.0005)
    assert SentenceTransformer(folder, file_name=WEIGHTS_FILE).get_backend() == "onnx"
    record(bar + 0.0005)
    monkeypatch.setattr(machine, "cpu_flags", lambda *a: frozenset({"avx2", "fma"}))
    assert SentenceTransformer(folder, file_name=WEIGHTS_FILE).get_backend() == "onnx"

"""benchmarks/cpu_classes.py (which rows run, what the section says) and benchmarks/int8_kernels.py's MatMulNBits
rewrite, without timing anything."""

from __future__ import annotations

import numpy as np


def _row(key: str, seconds: float, min_cos: float = 1.0) -> dict:
    return {"key": key, "name": key, "median_s": seconds, "texts_per_s": 100 / seconds, "x_torch_fp32": 1.0 / seconds,
            "x_le_fp32": 0.5 / seconds, "min_cos": min_cos, "mean_cos": min_cos}  # fmt: skip


def test_rows_run_torch_bf16_only_with_bf16_instructions_and_int8_only_when_asked():
    from benchmarks.amx import INT8_ROWS
    from benchmarks.cpu_classes import rows_for

    assert "st_torch_bf16" in rows_for(False, True) and "st_torch_bf16" not in rows_for(False, False)
    assert rows_for(False, True)[0] == "st_torch"  # the reference comes first
    assert not set(INT8_ROWS) & set(rows_for(False, True)) and set(INT8_ROWS) <= set(rows_for(True, True))
    assert {"le_auto", "le_fp32", "le_ov_f32", "le_ov_bf16", "fe_fp32"} <= set(rows_for(False, False))


def test_the_section_is_headed_smoke_unless_final_and_checks_the_targets():
    from benchmarks.cpu_classes import markdown

    rows = [_row("st_torch", 1.0), _row("st_torch_bf16", 0.5, 0.99993), _row("le_fp32", 0.5),
            _row("le_auto", 0.4, 0.99995)]  # fmt: skip
    report = {
        "final": False, "bf16": True, "rows": rows, "notes": {"le_auto": ["backend=openvino (measured ...)"]},
        "cpu_class": {"key": {"machine": "x86_64", "isa": ["avx512_bf16"]}, "cpu": {"model_name": "AMD EPYC 9R14"},
                      "runtime_versions": {"onnxruntime": "1.32.0", "openvino": None}},
        "machine": {"usable_cores": 2, "load_average_start": (0.1, 0.1, 0.1), "load_average_end": (0.2, 0.1, 0.1)},
        "n": 100, "batch_size": 32, "threads": 2, "repeats": 3, "command": "python -m benchmarks.cpu_classes",
        "tuned": None,
    }  # fmt: skip
    text = markdown(report)
    assert text.startswith("### Per CPU class: AMD EPYC 9R14 — SMOKE")
    assert "default vs torch bf16: 1.25x (target >= 1.2x: met)" in text
    assert "default vs torch fp32: 2.50x" in text and "default vs lightembed onnxruntime fp32: 1.25x" in text
    assert "OpenVINO not installed" in text
    assert "SMOKE" not in markdown({**report, "final": True})
    slow = markdown({**report, "rows": rows[:3] + [_row("le_auto", 0.6)]})
    assert "default vs lightembed onnxruntime fp32: 0.83x (target >= 1.0x: NOT met)" in slow


def test_nbits_rewrite_runs_on_onnxruntime_close_to_fp32(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from benchmarks.int8_kernels import write_nbits

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 24)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 24])],
        [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    out = write_nbits(tmp_path / "fp32.onnx", tmp_path / "q8.onnx", block_size=32)
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["MatMulNBits"]
    x = rng.standard_normal((5, 64)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = x @ weight
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() > 0.999
    alone = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x[:1]})[0]
    np.testing.assert_allclose(alone[0], got[0], rtol=1e-5, atol=1e-5)  # a row's result does not depend on the batch

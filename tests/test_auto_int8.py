"""--quantize auto keeps a batch-invariant int8 file when one keeps the auto bar (min cos >= 0.97, mean >= 0.99 on
the probes and the calibration texts), the dynamic file only when none does, and no int8 file that fails: then it
writes none and fails saying why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lightembed_export import quantize as quantizing


def _broken_dynamic(real):
    """quantize_file whose output ignores its input (a constant sentence embedding): it must fail its check."""

    def quantize_file(fp32_path, target, config_dir, per_channel=True):
        import onnx

        done = real(fp32_path, target, config_dir, per_channel)
        model = onnx.load(str(done.path))
        for node in model.graph.node:  # every weight MatMul multiplies by zero: the output no longer depends on text
            if node.op_type == "MatMulInteger":
                node.op_type = "Sub"
                del node.input[2:]
                node.input[1] = node.input[0]
        del model.graph.value_info[:]
        onnx.save(model, str(done.path))
        return done

    return quantize_file


def _constant_outputs(path):
    """Rewrite the ONNX file at `path` so every output becomes x * 0 + 1: it no longer depends on the text."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    for out in model.graph.output:
        for node in model.graph.node:
            node.output[:] = [f"{o}_pre" if o == out.name else o for o in node.output]
        model.graph.node.extend(
            [
                helper.make_node("Mul", [f"{out.name}_pre", "broken_zero"], [f"{out.name}_zeroed"]),
                helper.make_node("Add", [f"{out.name}_zeroed", "broken_one"], [out.name]),
            ]
        )
    model.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0), "broken_zero"), numpy_helper.from_array(np.float32(1), "broken_one")]
    )
    onnx.save(model, str(path))


def _tiny(tmp_path):
    from tests.test_export import _tiny_st

    return _tiny_st(tmp_path / "tiny-st")


@pytest.mark.parametrize(
    "amx, kept",
    [(False, "onnx/model_qint8_rowwise.onnx"), (True, "onnx/model_qint8_weights.onnx")],
)
def test_auto_keeps_the_best_batch_invariant_recipe_for_the_machine(tmp_path, monkeypatch, amx, kept):
    """Per-token int8 first; where OpenVINO will run it (extra installed, AMX-BF16), the int8-weights file first;
    the dynamic file is deleted (here it is broken as well: it is not even needed)."""
    from lightembed import machine
    from lightembed.graphs import openvino as openvino_backend
    from lightembed_export import export_model

    assert openvino_backend.is_installed()  # the openvino extra is part of the test install
    monkeypatch.setattr(machine, "has_amx_bf16", lambda flags=None: amx)
    monkeypatch.setattr(quantizing, "quantize_file", _broken_dynamic(quantizing.quantize_file))
    out = tmp_path / "out"
    export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    manifest = json.loads((out / "lightembed.json").read_text())
    paths = {f["path"]: f for f in manifest["files"]}
    assert kept in paths and paths[kept]["passed"]
    assert all(f["passed"] for f in manifest["files"])
    dynamic = quantizing.file_name(quantizing.detect_cpu_target()[0])
    assert not (out / "onnx" / dynamic).exists()  # the failing file is gone
    record = manifest["quantize_auto"]
    assert record["kept"] == kept and "batch-invariant" in record["why"]
    assert [(t["target"], t["passed"]) for t in record["tried"]] == [(kept.split("_")[-1][:-5], True)]
    check = paths[kept]["auto_check"]
    assert check["passed"] and check["bar"] == {"min_cosine": 0.97, "mean_cosine": 0.99}
    assert check["texts"]["texts"] > 17 and check["texts"]["min_cosine"] >= 0.97  # the calibration texts, measured


def test_auto_writes_no_int8_file_when_no_recipe_passes(tmp_path, monkeypatch):
    from lightembed_export import export_model
    from lightembed_export.errors import VerificationError

    monkeypatch.setattr(quantizing, "quantize_file", _broken_dynamic(quantizing.quantize_file))
    real_rowwise, real_weights = quantizing.quantize_rowwise_file, quantizing.quantize_weights_file

    def broken_rowwise(fp32):
        done = real_rowwise(fp32)
        _constant_outputs(done.path)
        return done

    def broken_weights(fp32):
        done = real_weights(fp32)
        _constant_outputs(done.path)
        return done

    monkeypatch.setattr(quantizing, "quantize_rowwise_file", broken_rowwise)
    monkeypatch.setattr(quantizing, "quantize_weights_file", broken_weights)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="no int8 recipe passes its check"):
        export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    assert not list((out / "onnx").glob("*int8*"))
    manifest = json.loads((out / "lightembed.json").read_text())
    assert manifest["quantize_auto"]["kept"] is None and len(manifest["quantize_auto"]["tried"]) == 3
    assert [f["path"] for f in manifest["files"]] == ["onnx/model.onnx"]


def test_auto_keeps_a_passing_dynamic_file_only_when_no_batch_invariant_recipe_passes(tmp_path, monkeypatch):
    from lightembed_export import auto_int8, export_model

    real_rowwise = quantizing.quantize_rowwise_file

    def broken_rowwise(fp32):
        done = real_rowwise(fp32)
        _constant_outputs(done.path)
        return done

    monkeypatch.setattr(quantizing, "quantize_rowwise_file", broken_rowwise)
    monkeypatch.setattr(auto_int8, "preferred", lambda: (quantizing.ROWWISE,))
    out = tmp_path / "out"
    export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    manifest = json.loads((out / "lightembed.json").read_text())
    dynamic = "onnx/" + quantizing.file_name(quantizing.detect_cpu_target()[0])
    assert [f["path"] for f in manifest["files"]] == ["onnx/model.onnx", dynamic]
    assert manifest["quantize_auto"]["kept"] == dynamic and "no batch-invariant recipe" in manifest["quantize_auto"]["why"]
    assert not (out / "onnx" / "model_qint8_rowwise.onnx").exists()
    assert manifest["files"][1]["auto_check"]["passed"]


def test_the_auto_bar_refuses_what_the_file_kind_threshold_lets_through(tmp_path, monkeypatch):
    """Every recipe passes mean >= 0.9 on the tiny model; with the bar set past what int8 keeps, none is kept."""
    from lightembed_export import auto_int8, export_model
    from lightembed_export.errors import VerificationError

    monkeypatch.setattr(auto_int8, "MEAN_COSINE", 0.999999999)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="auto bar min >= 0.97, mean >= 0.999"):
        export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    assert not list((out / "onnx").glob("*int8*"))


def test_auto_prefers_a_batch_invariant_file_to_a_passing_dynamic_one(tmp_path, monkeypatch):
    from lightembed import machine
    from lightembed_export import export_model

    monkeypatch.setattr(machine, "has_amx_bf16", lambda flags=None: False)
    out = tmp_path / "out"
    export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    manifest = json.loads((out / "lightembed.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["onnx/model.onnx", "onnx/model_qint8_rowwise.onnx"]
    assert not (out / "onnx" / quantizing.file_name(quantizing.detect_cpu_target()[0])).exists()
    assert manifest["files"][1]["quantization"]["batch_invariant"]
    assert manifest["quantize_auto"]["bar"]["min_cosine"] == 0.97

"""--quantize auto keeps no int8 file that fails its own check: it falls back to per-token int8, or writes none and
fails saying why."""

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


def _tiny(tmp_path):
    from tests.test_export import _tiny_st

    return _tiny_st(tmp_path / "tiny-st")


@pytest.mark.parametrize(
    "amx, kept",
    [(False, "onnx/model_qint8_rowwise.onnx"), (True, "onnx/model_qint8_weights.onnx")],
)
def test_auto_falls_back_to_the_best_recipe_for_the_machine_when_dynamic_fails(tmp_path, monkeypatch, amx, kept):
    """Per-token int8 first; where OpenVINO will run it (extra installed, AMX-BF16), the int8-weights file first."""
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
    assert record["kept"] == kept
    assert [t["passed"] for t in record["tried"]] == [False, True]


def test_auto_writes_no_int8_file_when_no_recipe_passes(tmp_path, monkeypatch):
    from lightembed_export import export_model
    from lightembed_export.errors import VerificationError

    monkeypatch.setattr(quantizing, "quantize_file", _broken_dynamic(quantizing.quantize_file))
    real_rowwise, real_weights = quantizing.quantize_rowwise_file, quantizing.quantize_weights_file

    def broken_rowwise(fp32):
        done = real_rowwise(fp32)
        _broken_dynamic(lambda *a, **k: done)(fp32, None, None)
        return done

    def broken_weights(fp32):  # every output becomes x * 0 + 1: it no longer depends on the text
        import onnx
        from onnx import helper, numpy_helper

        done = real_weights(fp32)
        model = onnx.load(str(done.path))
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
        onnx.save(model, str(done.path))
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


def test_auto_keeps_a_passing_dynamic_file(tmp_path):
    from lightembed_export import export_model

    out = tmp_path / "out"
    export_model(_tiny(tmp_path), out, quantize=["auto"], verbose=False)
    manifest = json.loads((out / "lightembed.json").read_text())
    assert "quantize_auto" not in manifest and not (out / "onnx" / "model_qint8_rowwise.onnx").exists()
    assert len(manifest["files"]) == 2 and all(f["passed"] for f in manifest["files"])

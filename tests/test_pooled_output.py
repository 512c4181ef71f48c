"""The exporter's fused pooling output: the same vectors as NumPy pooling, used only when it matches the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer
from lightembed.pooling import POOLED_METADATA_KEY, POOLED_OUTPUT, pool
from lightembed.graphs.onnxruntime import OnnxGraph, create_session
from tests.tiny import HIDDEN, make_model

pytest.importorskip("onnx")
from lightembed_export.pooled import add_pooled_output, can_fuse  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog", "hello world hello world red blue green fast slow big small", "query"]
MODE_SETS = [("mean",), ("cls",), ("max",), ("mean_sqrt_len_tokens",), ("cls", "max", "mean"), ("mean", "mean")]


def _pooling_config(modes: tuple[str, ...]) -> dict:
    return {"word_embedding_dimension": HIDDEN, "pooling_mode": list(modes)}


def _set_opset(path: Path, opset: int) -> None:
    import onnx

    model = onnx.load(str(path))
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    onnx.save(model, str(path))


@pytest.mark.parametrize("opset", [17, 18])  # ReduceMax takes axes as an attribute before 18, as an input from 18
@pytest.mark.parametrize("modes", MODE_SETS)
def test_fused_output_equals_numpy_pooling(tmp_path: Path, modes: tuple[str, ...], opset: int) -> None:
    folder = make_model(tmp_path / "m", pooling=_pooling_config(modes))
    onnx_file = folder / "onnx" / "model.onnx"
    _set_opset(onnx_file, opset)
    assert add_pooled_output(onnx_file, modes)

    model = SentenceTransformer(str(folder), device="cpu")
    assert model.has_pooled_output and model.use_pooled_output
    fused = model.encode(TEXTS)
    model.use_pooled_output = False
    numpy_pooled = model.encode(TEXTS)
    assert fused.shape == (len(TEXTS), HIDDEN * len(modes))
    np.testing.assert_allclose(fused, numpy_pooled, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("modes", MODE_SETS)
def test_fused_output_on_left_padded_and_random_masks(tmp_path: Path, modes: tuple[str, ...]) -> None:
    folder = make_model(tmp_path / "m", pooling=_pooling_config(modes))
    onnx_file = folder / "onnx" / "model.onnx"
    assert add_pooled_output(onnx_file, modes)
    graph = OnnxGraph(create_session(onnx_file, ["CPUExecutionProvider"]))
    assert graph.metadata[POOLED_METADATA_KEY] == ",".join(modes)
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 20, size=(6, 9))
    mask = np.ones((6, 9), dtype=np.int64)
    mask[1, :4] = 0  # left padding
    mask[2, 5:] = 0  # right padding
    mask[3] = rng.integers(0, 2, size=9)
    mask[3, 2] = 1
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    expected = pool(graph(arrays, "last_hidden_state"), mask, modes)
    np.testing.assert_allclose(graph(arrays, POOLED_OUTPUT), expected, rtol=1e-6, atol=1e-6)


def test_float16_hidden_states_are_pooled_in_float32(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    folder = make_model(tmp_path / "m")
    onnx_file = folder / "onnx" / "model.onnx"
    model = onnx.load(str(onnx_file))
    (node,) = [n for n in model.graph.node if "last_hidden_state" in n.output]
    node.output[0] = "hidden32"
    model.graph.node.append(helper.make_node("Cast", ["hidden32"], ["last_hidden_state"], to=TensorProto.FLOAT16))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(onnx_file))
    assert add_pooled_output(onnx_file, ("mean",))

    graph = OnnxGraph(create_session(onnx_file, ["CPUExecutionProvider"]))
    arrays = {"input_ids": np.array([[2, 5, 6, 3, 0]]), "attention_mask": np.array([[1, 1, 1, 1, 0]])}
    arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    hidden16 = graph.session.run(["last_hidden_state"], arrays)[0]
    assert hidden16.dtype == np.float16
    pooled = graph.session.run([POOLED_OUTPUT], arrays)[0]
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, pool(hidden16.astype(np.float32), arrays["attention_mask"], ("mean",)), atol=1e-6)


def test_unfusable_modes_leave_the_file_alone(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m", pooling=_pooling_config(("weightedmean",)))
    onnx_file = folder / "onnx" / "model.onnx"
    before = onnx_file.read_bytes()
    assert not can_fuse(("weightedmean",)) and not can_fuse(("mean", "lasttoken")) and not can_fuse(())
    assert not add_pooled_output(onnx_file, ("weightedmean",))
    assert onnx_file.read_bytes() == before
    assert not SentenceTransformer(str(folder), device="cpu").has_pooled_output


def test_output_fused_with_other_modes_than_the_config_is_not_used(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m", pooling=_pooling_config(("cls",)))
    onnx_file = folder / "onnx" / "model.onnx"
    assert add_pooled_output(onnx_file, ("mean",))  # e.g. the Pooling config was edited after export
    model = SentenceTransformer(str(folder), device="cpu")
    assert not model.has_pooled_output and not model.use_pooled_output
    hidden = model.encode(TEXTS, output_value="token_embeddings")
    expected = np.stack([h[0] for h in hidden])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode(TEXTS), expected, rtol=1e-6, atol=1e-6)


def test_a_second_fusion_is_refused(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m")
    onnx_file = folder / "onnx" / "model.onnx"
    assert add_pooled_output(onnx_file, ("mean",))
    assert not add_pooled_output(onnx_file, ("mean",))


def test_prompts_that_pooling_excludes_fall_back_to_numpy_pooling(tmp_path: Path) -> None:
    folder = make_model(
        tmp_path / "m",
        pooling={**_pooling_config(("mean",)), "include_prompt": False},
        prompts={"query": "query "},
    )
    assert add_pooled_output(folder / "onnx" / "model.onnx", ("mean",))
    model = SentenceTransformer(str(folder), device="cpu")
    fused_path = model.encode(TEXTS, prompt_name="query")
    model.use_pooled_output = False
    np.testing.assert_allclose(fused_path, model.encode(TEXTS, prompt_name="query"), rtol=1e-6, atol=1e-6)

"""Per-token int8: each weight MatMul runs in int8 with an activation scale per row (token) and a weight scale per
output channel, both symmetric.

Dynamic int8 (onnxruntime's DynamicQuantizeLinear) takes one activation scale for the whole batch tensor, so one
outlier token anywhere in the batch (or padding) coarsens every other text's activations: a text's vector moves
with its batch-mates. A scale per row depends on that token alone, so a text gets the same vector alone or in any
batch, by construction, and a token with small activations keeps its resolution.

The rewrite runs on onnxruntime's int8 GEMM kernels (u8 x s8): per-axis QuantizeLinear and its com.microsoft
MatMulIntegerToFloat by default, standard ONNX ops only with `plain`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np


def weight_matmuls(model) -> list[str]:
    """Names of the MatMul nodes whose second input is a 2-D constant weight (the ones this recipe quantizes)."""
    inits = {i.name: i for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    ]


def column_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] weight as symmetric int8 with one float32 scale per output column: (int8 weight, scales)."""
    weight = weight.astype(np.float32)
    scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def quantize_rowwise(
    src: str | Path,
    dst: str | Path,
    keep_fp32: Iterable[str] | Callable[[str], bool] = (),
    plain: bool = False,
) -> dict[str, list[str]]:
    """Write `dst`: `src` with every weight MatMul in per-token int8, except the nodes `keep_fp32` names (a set of
    node names or a predicate on the name). Returns the quantized and the kept node names.

    An activation that feeds several MatMuls (a block's query, key and value) is quantized once. By default the
    graph uses onnxruntime's fused ops: one per-axis QuantizeLinear per activation and MatMulIntegerToFloat (int8
    GEMM, per-column weight scale, float out) per MatMul, so each MatMul costs about four passes over memory instead
    of eleven (the unfused recipe ran 1.2-1.4x fp32 on MiniLM, benchmarks/RESULTS.md). `plain` writes standard ONNX
    ops only (Round/Cast/MatMulInteger), for a runtime without onnxruntime's com.microsoft ops."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    keep = keep_fp32 if callable(keep_fp32) else set(keep_fp32).__contains__
    model = onnx.load(str(src))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    inits = {i.name: i for i in graph.initializer}
    targets = set(weight_matmuls(model))
    done: dict[str, list[str]] = {"quantized": [], "kept": []}
    nodes, new_inits, dropped = [], [], set()
    constants: dict[str, Any] = {  # only what the chosen spelling reads: no unused initializers in the file
        "rowwise_127": np.array(127.0, dtype=np.float32),
        "rowwise_eps": np.array(1e-12, dtype=np.float32),
        "rowwise_zero_point": np.array(128, dtype=np.uint8),
    }
    if not plain or opset >= 18:  # the fused spelling's flattening Reshape, ReduceMax's axes from opset 18: both [-1]
        constants["rowwise_last_axis"] = np.array([-1], dtype=np.int64)
    if plain:
        constants["rowwise_128"] = np.array(128.0, dtype=np.float32)
    else:
        constants.update(rowwise_zero_point_1d=np.array([128], dtype=np.uint8), rowwise_one=np.array(1.0, np.float32))
    new_inits += [numpy_helper.from_array(value, name) for name, value in constants.items()]
    quantized: dict[str, tuple[str, str]] = {}  # activation -> (its u8 tensor, its per-row scales)

    def quantize_input(x: str, k: int) -> tuple[str, str]:
        if x in quantized:
            return quantized[x]
        p = f"rowwise_x{len(quantized)}"
        if opset >= 18:
            reduce = helper.make_node("ReduceMax", [f"{p}_abs", "rowwise_last_axis"], [f"{p}_amax"], keepdims=1)
        else:
            reduce = helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_amax"], axes=[-1], keepdims=1)
        nodes.extend([
            helper.make_node("Abs", [x], [f"{p}_abs"]),
            reduce,
            helper.make_node("Max", [f"{p}_amax", "rowwise_eps"], [f"{p}_amax_eps"]),
            helper.make_node("Div", [f"{p}_amax_eps", "rowwise_127"], [f"{p}_xs"]),
        ])  # fmt: skip
        # u8 with zero point 128 (still symmetric): onnxruntime's fast int8 GEMMs are u8 x s8.
        if plain:
            nodes.extend([
                helper.make_node("Div", [x, f"{p}_xs"], [f"{p}_xn"]),
                helper.make_node("Round", [f"{p}_xn"], [f"{p}_xr"]),
                helper.make_node("Add", [f"{p}_xr", "rowwise_128"], [f"{p}_xo"]),
                helper.make_node("Cast", [f"{p}_xo"], [f"{p}_xq"], to=TensorProto.UINT8),
            ])  # fmt: skip
        else:  # per-axis QuantizeLinear wants the rows as one axis and a 1-D scale (and zero point) along it
            k_init = f"{p}_rows_shape"
            new_inits.append(numpy_helper.from_array(np.array([-1, k], dtype=np.int64), k_init))
            nodes.extend([
                helper.make_node("Shape", [x], [f"{p}_shape"]),
                helper.make_node("Reshape", [x, k_init], [f"{p}_x2"]),
                helper.make_node("Reshape", [f"{p}_xs", "rowwise_last_axis"], [f"{p}_xs1"]),
                helper.make_node("Shape", [f"{p}_xs1"], [f"{p}_rows"]),
                helper.make_node("Expand", ["rowwise_zero_point_1d", f"{p}_rows"], [f"{p}_zp"]),
                helper.make_node("QuantizeLinear", [f"{p}_x2", f"{p}_xs1", f"{p}_zp"], [f"{p}_xq2"], axis=0),
                helper.make_node("Reshape", [f"{p}_xq2", f"{p}_shape"], [f"{p}_xq"]),
            ])  # fmt: skip
        quantized[x] = (f"{p}_xq", f"{p}_xs")
        return quantized[x]

    for index, node in enumerate(graph.node):
        if node.name not in targets:
            nodes.append(node)
            continue
        if keep(node.name):
            done["kept"].append(node.name)
            nodes.append(node)
            continue
        x, w_name = node.input[0], node.input[1]
        w_int8, w_scale = column_int8(numpy_helper.to_array(inits[w_name]))
        p = f"rowwise{index}"
        new_inits += [numpy_helper.from_array(w_int8, f"{p}_w"), numpy_helper.from_array(w_scale, f"{p}_ws")]
        dropped.add(w_name)
        xq, xs = quantize_input(x, int(w_int8.shape[0]))
        if plain:
            nodes += [
                helper.make_node("MatMulInteger", [xq, f"{p}_w", "rowwise_zero_point"], [f"{p}_acc"]),
                helper.make_node("Cast", [f"{p}_acc"], [f"{p}_accf"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{p}_accf", xs], [f"{p}_y1"]),
                helper.make_node("Mul", [f"{p}_y1", f"{p}_ws"], list(node.output), name=node.name),
            ]
        else:
            nodes += [
                helper.make_node(
                    "MatMulIntegerToFloat", [xq, f"{p}_w", "rowwise_one", f"{p}_ws", "rowwise_zero_point"],
                    [f"{p}_y1"], domain="com.microsoft",
                ),
                helper.make_node("Mul", [f"{p}_y1", xs], list(node.output), name=node.name),
            ]  # fmt: skip
        done["quantized"].append(node.name)
    if not plain and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    save_rewritten(model, nodes, new_inits, dropped, dst)
    return done


def save_rewritten(model, nodes: list, new_inits: list, dropped: set[str], dst: str | Path) -> None:
    """Give `model` the rewritten `nodes` and `new_inits`, drop the `dropped` initializers no node reads any more,
    and save it to `dst`."""
    import onnx

    graph = model.graph
    still_used = {name for n in nodes for name in n.input}
    kept_inits = [i for i in graph.initializer if i.name not in dropped or i.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    onnx.save(model, str(dst))

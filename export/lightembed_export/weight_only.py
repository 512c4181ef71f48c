"""int8 weights, float activations: every weight MatMul's weight stored as int8 with a scale per output column
(`DequantizeLinear` -> `MatMul`), for OpenVINO's CPU plugin.

OpenVINO reads this pattern as a compressed-weight MatMul and runs it without ever quantizing activations across a
batch: on AMX CPUs it decompresses the weights inside its bf16 kernels (and may quantize activations per token
group), so a text's vector does not depend on its batch-mates. On MiniLM it ran 2.2x onnxruntime fp32 at mean cos
0.9995 / min 0.9990 to fp32, alone vs batched 0.99999 (benchmarks/int8_recipes.py). onnxruntime runs the same file
correctly but dequantizes every weight at each run, so without OpenVINO it is no faster than fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightembed_export.rowwise import column_int8, save_rewritten, weight_matmuls


def quantize_weights(src: str | Path, dst: str | Path) -> list[str]:
    """Write `dst`: `src` with every 2-D constant MatMul weight stored as per-column int8 behind a DequantizeLinear.
    Returns the names of the MatMuls changed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    targets = set(weight_matmuls(model))
    nodes, new_inits, dropped, done = [], [], set(), []
    for index, node in enumerate(graph.node):
        if node.name not in targets:
            nodes.append(node)
            continue
        w_int8, w_scale = column_int8(numpy_helper.to_array(inits[node.input[1]]))
        p = f"w8_{index}"
        new_inits += [
            numpy_helper.from_array(w_int8, f"{p}_q"),
            numpy_helper.from_array(w_scale, f"{p}_scale"),
            numpy_helper.from_array(np.zeros(w_scale.shape, dtype=np.int8), f"{p}_zero"),
        ]
        dropped.add(node.input[1])
        nodes += [
            helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_scale", f"{p}_zero"], [f"{p}_w"], axis=1),
            helper.make_node("MatMul", [node.input[0], f"{p}_w"], list(node.output), name=node.name),
        ]
        done.append(node.name)
    save_rewritten(model, nodes, new_inits, dropped, dst)
    return done

"""The masked-LM decoder of a fill-mask export, checked numerically against the word embeddings it is tied to.

A SPLADE checkpoint usually stores no decoder weight: transformers ties it to the word-embedding matrix E. If that
tie were lost (a missing or renamed weight), torch and ONNX would agree on a randomly initialized decoder and the
parity checks would pass anyway. This check runs the exported graph with the decoder's input exposed and tests
that the logits are that input times E transposed, plus the bias: logits == h @ E.T + b.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LOGITS = "logits"
TOLERANCE = 1e-4
"""Largest allowed |logits - (h @ E.T + b)|, relative to max(1, max |logits|)."""


def _initializers(graph: Any) -> dict[str, Any]:
    return {init.name: init for init in graph.initializer}


def _find_pattern(model: Any) -> tuple[str, str, str | None] | str:
    """(decoder input h, word-embedding initializer E, bias initializer or None), or why the pattern is missing.

    The pattern: logits = Add(MatMul(h, W), b) (or MatMul alone), E = the Gather table indexed by input_ids.
    """
    graph = model.graph
    inits = _initializers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    table = next(
        (n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[1] == "input_ids" and n.input[0] in inits),
        None,
    )
    if table is None:
        return "no Gather of input_ids from a word-embedding initializer"
    node = producers.get(LOGITS)
    bias = None
    if node is not None and node.op_type == "Add":
        constant = [name for name in node.input if name in inits]
        tensors = [name for name in node.input if name not in inits]
        if len(constant) != 1 or len(tensors) != 1:
            return "the logits' Add does not add one bias initializer"
        bias, node = constant[0], producers.get(tensors[0])
    if node is None or node.op_type != "MatMul":
        return "the logits are not computed by a MatMul (plus bias)"
    return node.input[0], table, bias


def check_tied_decoder(onnx_path: Path, seed: int = 0) -> dict[str, Any]:
    """Whether the fill-mask graph's decoder computes logits = h @ E.T + b with E its word embeddings.

    Returns {"checked": bool, "tied": bool | None, "max_abs_diff": float | None, "reason": str | None}; "checked"
    is False (and "reason" says why) when the graph does not have the expected decoder pattern.
    """
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    found = _find_pattern(model)
    if isinstance(found, str):
        return {"checked": False, "tied": None, "max_abs_diff": None, "reason": found}
    hidden, table, bias_name = found
    inits = _initializers(model.graph)
    embeddings = numpy_helper.to_array(inits[table]).astype(np.float64)
    bias = numpy_helper.to_array(inits[bias_name]).astype(np.float64) if bias_name else 0.0
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(hidden))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, embeddings.shape[0], size=(2, 12), dtype=np.int64)
    feeds = {}
    for spec in session.get_inputs():
        if spec.name == "input_ids":
            feeds[spec.name] = ids
        elif spec.name == "attention_mask":
            feeds[spec.name] = np.ones_like(ids)
        else:  # token_type_ids, position_ids
            feeds[spec.name] = np.zeros_like(ids) if "type" in spec.name else np.tile(np.arange(12), (2, 1))
    logits, h = session.run([LOGITS, hidden], feeds)
    expected = np.asarray(h, dtype=np.float64) @ embeddings.T + bias
    diff = float(np.abs(expected - logits).max())
    scale = max(1.0, float(np.abs(logits).max()))
    return {"checked": True, "tied": diff <= TOLERANCE * scale, "max_abs_diff": diff, "reason": None}

"""Pooling fused into an exported graph: a `sentence_embedding` output beside `last_hidden_state`.

With it, a session on a GPU hands back one pooled vector per text instead of every token's hidden state; the
runtime reads the pooling modes recorded in the file's metadata and uses the output only when they match the
model's Pooling config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.pooling import FUSABLE_MODES, POOLED_METADATA_KEY, POOLED_OUTPUT

HIDDEN_OUTPUT = "last_hidden_state"
_PREFIX = "lightembed_pooling/"


def can_fuse(modes: Sequence[str]) -> bool:
    """Whether every mode in `modes` can be written as graph nodes."""
    return bool(modes) and set(modes) <= FUSABLE_MODES


def add_pooled_output(path: Path, modes: Sequence[str]) -> bool:
    """Append pooling nodes for `modes` and the float32 output `sentence_embedding` to the ONNX file at `path`.

    Returns False, leaving the file as it was, when a mode cannot be fused or the graph lacks `last_hidden_state`
    or `attention_mask` (or already has the output).
    """
    import onnx

    if not can_fuse(modes):
        return False
    model = onnx.load(str(path), load_external_data=False)
    if not pool_into(model, modes):
        return False
    onnx.save(model, str(path))
    return True


def pool_into(model: Any, modes: Sequence[str]) -> bool:
    """add_pooled_output() on a loaded ModelProto, in memory; returns whether it changed the model."""
    import onnx

    modes = tuple(modes)
    if not can_fuse(modes):
        return False
    found = NodeBuilder.after_hidden(model, POOLED_OUTPUT)
    if found is None:
        return False
    builder, hidden = found
    pooled = builder.pool(hidden, modes)
    builder.append_to(model.graph)
    model.graph.node.append(onnx.helper.make_node("Identity", [pooled], [POOLED_OUTPUT], name=_PREFIX + "output"))
    model.graph.output.append(_output_info(hidden, len(modes)))
    entry = model.metadata_props.add()
    entry.key, entry.value = POOLED_METADATA_KEY, ",".join(modes)
    return True


def _output_info(hidden: Any, n_modes: int) -> Any:
    from onnx import TensorProto, helper

    dims = hidden.type.tensor_type.shape.dim
    batch: Any = (dims[0].dim_param or dims[0].dim_value or "batch_size") if dims else "batch_size"
    width: Any = dims[-1].dim_value * n_modes if dims and dims[-1].dim_value else "pooled_width"
    return helper.make_tensor_value_info(POOLED_OUTPUT, TensorProto.FLOAT, [batch, width])


class NodeBuilder:
    """Writes nodes appended to a graph for one opset (axes are inputs from opset 13, ReduceMax's from 18), each
    named `prefix` + its output: the pooling nodes here, BGE-M3's heads in lightembed_export.bge_m3."""

    def __init__(self, opset: int, prefix: str = _PREFIX) -> None:
        self.opset = opset
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._sum_and_count: tuple[str, str] | None = None

    @classmethod
    def after_hidden(cls, model: Any, new_output: str, prefix: str = _PREFIX) -> tuple[NodeBuilder, Any] | None:
        """A builder for nodes that read `last_hidden_state` of the ModelProto `model` (at its opset), with that
        output's ValueInfo; None when the graph lacks it or `attention_mask`, or has `new_output` already."""
        outputs = {out.name: out for out in model.graph.output}
        if HIDDEN_OUTPUT not in outputs or new_output in outputs:
            return None
        if "attention_mask" not in {node.name for node in model.graph.input}:
            return None
        opset = next(int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx"))
        return cls(opset, prefix), outputs[HIDDEN_OUTPUT]

    def append_to(self, graph: Any) -> None:
        """Add the nodes and initializers written so far to `graph`."""
        graph.node.extend(self.nodes)
        graph.initializer.extend(self.initializers)

    def node(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        name = self.prefix + out
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def const(self, out: str, value: Any) -> str:
        from onnx import numpy_helper

        name = self.prefix + out
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def axes_op(self, op: str, x: str, axes: list[int], out: str, since: int, **attrs: Any) -> str:
        if self.opset >= since:
            return self.node(op, [x, self.const(out + "_axes", np.array(axes, dtype=np.int64))], out, **attrs)
        return self.node(op, [x], out, axes=axes, **attrs)

    def pool(self, hidden: Any, modes: tuple[str, ...]) -> str:
        from onnx import TensorProto

        x = hidden.name
        if hidden.type.tensor_type.elem_type != TensorProto.FLOAT:  # fp16 graphs pool in float32
            x = self.node("Cast", [x], "hidden_float", to=TensorProto.FLOAT)
        mask = self.node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)  # (batch, seq)
        results: dict[str, str] = {}
        for mode in modes:
            if mode in results:
                continue
            if mode in ("mean", "mean_sqrt_len_tokens"):
                results[mode] = self._mean(x, mask, sqrt=mode == "mean_sqrt_len_tokens")
            elif mode == "cls":
                results[mode] = self._cls(x, mask)
            elif mode == "max":
                results[mode] = self._max(x, mask)
        parts = [results[mode] for mode in modes]
        return parts[0] if len(parts) == 1 else self.node("Concat", parts, "concat", axis=-1)

    def _weighted_sum(self, x: str, weights: str, out: str) -> str:
        """sum over tokens of weights[b, t] * x[b, t, :], as a (batch, 1, seq) x (batch, seq, hidden) MatMul."""
        row = self.axes_op("Unsqueeze", weights, [1], out + "_row", 13)
        summed = self.node("MatMul", [row, x], out + "_matmul")
        return self.axes_op("Squeeze", summed, [1], out, 13)

    def _mean(self, x: str, mask: str, sqrt: bool) -> str:
        if self._sum_and_count is None:  # mean and mean_sqrt_len_tokens share the sum and the count
            total = self._weighted_sum(x, mask, "sum")
            raw = self.axes_op("ReduceSum", mask, [1], "count_raw", 13, keepdims=1)
            count = self.node("Max", [raw, self.const("eps", np.array(1e-9, dtype=np.float32))], "count")
            self._sum_and_count = (total, count)
        total, count = self._sum_and_count
        if sqrt:
            count = self.node("Sqrt", [count], "sqrt_count")
        return self.node("Div", [total, count], "mean_sqrt_len" if sqrt else "mean")

    def _cls(self, x: str, mask: str) -> str:
        from onnx import TensorProto

        # the first real token (also with left padding): where the running count of mask ones first reaches 1
        running = self.node("CumSum", [mask, self.const("seq_axis", np.array(1, dtype=np.int64))], "running")
        first = self.node("Equal", [running, self.const("one", np.array(1.0, dtype=np.float32))], "is_first")
        onehot = self.node("Mul", [self.node("Cast", [first], "first_f", to=TensorProto.FLOAT), mask], "first_onehot")
        return self._weighted_sum(x, onehot, "cls")

    def _max(self, x: str, mask: str) -> str:
        real = self.node("Greater", [mask, self.const("zero", np.array(0.0, dtype=np.float32))], "real")
        real3 = self.axes_op("Unsqueeze", real, [2], "real3", 13)
        floor = self.const("neg_inf", np.array(-np.inf, dtype=np.float32))
        masked = self.node("Where", [real3, x, floor], "masked")
        return self.axes_op("ReduceMax", masked, [1], "max", 18, keepdims=0)

"""Records what reaches a model's ONNX graph: the shape of every batch and the output asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GraphCall:
    """One run of the graph: rows and padded sequence length of input_ids, and the output name requested."""

    rows: int
    seq: int
    output: str


class GraphRecorder:
    """Stands in for a model's `_graph` (an OnnxGraph): runs it and appends a GraphCall per run."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.calls: list[GraphCall] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def __call__(self, arrays: dict[str, Any], output: str | None = None) -> Any:
        rows, seq = arrays["input_ids"].shape
        self.calls.append(GraphCall(int(rows), int(seq), output or self.graph.output_name))
        return self.graph(arrays, output)


def record(model: Any) -> GraphRecorder:
    """Wrap `model._graph` in a GraphRecorder and return it."""
    recorder = GraphRecorder(model._graph)
    model._graph = recorder
    return recorder

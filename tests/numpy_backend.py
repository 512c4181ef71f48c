"""A backend added the documented way (one module with `open_file`, one line in graphs.policy.OPENERS): the tiny
test graph of tests/tiny.py computed in NumPy, `(E[input_ids] + T[token_type_ids]) * attention_mask`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tests.tiny import HIDDEN, weights


class NumpyGraph:
    """The tiny graph behind the Graph protocol, with no onnxruntime underneath."""

    input_dtypes = {"input_ids": "int64", "attention_mask": "int64", "token_type_ids": "int64"}
    output_names = ["last_hidden_state"]
    output_name = "last_hidden_state"
    output_width = HIDDEN
    metadata: dict[str, str] = {}
    io_binding = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.emb, self.types = weights(0)

    @property
    def input_names(self) -> list[str]:
        return list(self.input_dtypes)

    @property
    def providers(self) -> list[str]:
        return ["NumPy"]

    @property
    def threads(self) -> int:
        return 1

    def output_shape(self, name: str | None = None) -> list[Any] | None:
        return [None, None, HIDDEN]

    def __call__(self, arrays: Mapping[str, Any], output: str | None = None) -> np.ndarray:
        ids, types = np.asarray(arrays["input_ids"]), np.asarray(arrays["token_type_ids"])
        mask = np.asarray(arrays["attention_mask"], dtype=np.float32)[..., None]
        return ((self.emb[ids] + self.types[types]) * mask).astype(np.float32)


def open_file(path: Path, options: Any) -> NumpyGraph:
    return NumpyGraph(path)

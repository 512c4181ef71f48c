"""What every backend's graph is to the model classes above it: the `Graph` protocol, and the input contract all
backends share (which inputs lightembed can feed, with which dtypes, and position_ids made from the mask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from lightembed.errors import ModelFileError, NonFiniteOutput

Modality = Literal["text", "image"]
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
INT_DTYPES = ("int64", "int32")
IMAGE_INPUT = "pixel_values"


@runtime_checkable
class Graph(Protocol):
    """An opened model file: what it takes, what it gives, and running it.

    `__call__` takes arrays keyed by input name (extra keys are ignored, dtypes are converted) and returns one
    output (default `output_name`) as float32. `providers` and `threads` are what `runtime_info` reports.
    """

    input_dtypes: dict[str, str]
    output_names: list[str]
    output_name: str
    output_width: int | None
    metadata: dict[str, str]
    io_binding: bool

    @property
    def input_names(self) -> list[str]: ...

    @property
    def providers(self) -> list[str]: ...

    @property
    def threads(self) -> int: ...

    def output_shape(self, name: str | None = None) -> list[Any] | None:
        """The declared shape of an output (default: the chosen one); None entries are dynamic dims."""
        ...

    def __call__(self, arrays: Mapping[str, Any], output: str | None = None) -> np.ndarray: ...

    def run(self, arrays: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Several outputs of one run (float32, keyed by name): a model with more than one head (BGE-M3)."""
        ...


def position_ids(attention_mask: np.ndarray) -> np.ndarray:
    """Positions as transformers numbers them for a decoder: the running count of real tokens minus one,
    0 on padding, so a left-padded text gets the positions it has alone."""
    mask = np.asarray(attention_mask, dtype=np.int64)
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def check_inputs(ports: Iterable[tuple[str, str | None]], modality: Modality = "text") -> dict[str, str]:
    """The graph's inputs as {name: NumPy dtype}, from (name, NumPy dtype or None when unsupported) pairs; an error
    naming the input for one lightembed cannot feed."""
    dtypes: dict[str, str] = {}
    for name, dtype in ports:
        if modality == "image":
            if name != IMAGE_INPUT or dtype != "float32":
                raise ModelFileError(f"The graph takes {name!r} ({dtype}); a vision tower takes float pixel_values only.")
        else:
            if name not in TEXT_INPUTS:
                raise ModelFileError(
                    f"The ONNX graph takes an input {name!r} that lightembed cannot provide (it provides {TEXT_INPUTS})."
                )
            if dtype not in INT_DTYPES:
                raise ModelFileError(f"The ONNX graph's input {name!r} has unsupported type {dtype}.")
        dtypes[name] = dtype
    required = IMAGE_INPUT if modality == "image" else "input_ids"
    if required not in dtypes:
        what = "a vision tower" if modality == "image" else "a text transformer"
        raise ModelFileError(f"The ONNX graph has no {required!r} input; it is not {what}.")
    return dtypes


def make_feed(arrays: Mapping[str, Any], dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The arrays a graph takes, in its dtypes (contiguous), with position_ids made from the mask when the graph
    takes them and they were not given."""
    if "position_ids" in dtypes and "position_ids" not in arrays:
        arrays = {**arrays, "position_ids": position_ids(arrays["attention_mask"])}
    return {key: np.ascontiguousarray(arrays[key], dtype=dtype) for key, dtype in dtypes.items()}


def finite(out: np.ndarray, name: str, path: Any) -> np.ndarray:
    """`out` as float32, or an error when it holds NaN or infinity: damaged weights give those, and a vector made
    of them is garbage, never an answer."""
    out = out if out.dtype == np.float32 else out.astype(np.float32)
    if not np.isfinite(out).all():
        raise NonFiniteOutput(
            f"The graph {path} returned non-finite values (NaN or infinity) in {name!r}: its weights are damaged or "
            "it overflowed in its precision; fetch or export the model again (or use its fp32 file)."
        )
    return out


def choose_output(names: Sequence[str], preferred: Sequence[str]) -> str:
    """The first of `preferred` the graph has, else its first output."""
    return next((name for name in preferred if name in names), names[0])


def last_dim(shape: Sequence[Any] | None) -> int | None:
    """The static size of a shape's last dimension, or None."""
    return shape[-1] if shape and isinstance(shape[-1], int) else None

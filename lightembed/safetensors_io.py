"""Read tensors from a .safetensors file with NumPy alone (no torch, no safetensors package)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from lightembed.errors import LightembedValueError, ModelFileError

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Return every tensor in a safetensors file as a float32-or-native NumPy array (BF16 becomes float32)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise LightembedValueError(f"{path} is not a safetensors file: it is only {len(data)} bytes long.")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise LightembedValueError(f"{path} is not a valid safetensors file: its header length is out of range.")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LightembedValueError(f"{path} is not a valid safetensors file: unreadable header ({exc}).") from None
    body = memoryview(data)[8 + header_len :]
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array: np.ndarray = bits.view(np.float32)
        elif dtype in _DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<")).copy()
        else:
            raise LightembedValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}.")
        tensors[name] = array.reshape(info["shape"])
    return tensors


def tensor_names(path: str | Path) -> list[str]:
    """The names of the tensors in a safetensors file, from its header alone ([] when it is not one)."""
    try:
        with Path(path).open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(header_len, 100_000_000)))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError):
        return []
    return [name for name in header if name != "__metadata__"] if isinstance(header, dict) else []


def map_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in a safetensors file as a read-only array memory-mapped from the file (nothing is read until
    used, and processes that map the same file share its pages). BF16 tensors are refused: they have no NumPy dtype
    to map as (load_safetensors converts them, at the cost of a copy)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} is not a safetensors file: it is only {len(head)} bytes long.")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise ModelFileError(f"{path} is not a valid safetensors file: its header length is out of range.")
        raw_header = handle.read(header_len)
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is not a valid safetensors file: unreadable header ({exc}).") from None
    body = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype}, which cannot be memory-mapped.")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")
        if end - start != int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize or body + end > size:
            raise ModelFileError(f"{path}: tensor {name!r} does not fit its recorded offsets.")
        if end == start:
            tensors[name] = np.zeros(shape, dtype=np_dtype)
            continue
        tensors[name] = np.memmap(path, dtype=np_dtype, mode="r", offset=body + start, shape=shape)
    return tensors

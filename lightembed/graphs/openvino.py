"""The OpenVINO backend (`backend="openvino"`, the `lightembed[openvino]` extra): an ONNX file compiled by Intel's
OpenVINO runtime for the CPU, behind the `Graph` protocol, so tokenization, batching and pooling stay lightembed's.

On CPUs with AMX-BF16 (Intel Sapphire Rapids and later) OpenVINO runs the MatMuls in bfloat16 on AMX tiles:
~2.5x onnxruntime fp32 at min cosine >= 0.9999 to fp32 (benchmarks/amx.py, benchmarks/RESULTS.md "Issue 13").
When `backend=None` picks it: lightembed.graphs.policy.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightembed import machine
from lightembed.errors import LightembedValueError, ModelFileError
from lightembed.graphs.onnxruntime import check_threads
from lightembed.graphs.protocol import Modality, check_inputs, choose_output, finite, last_dim, make_feed

EXTRA_HINT = 'pip install "lightembed[openvino]"'
PROVIDER_NAME = "OpenVINO:CPU"
ENV_CACHE = "LIGHTEMBED_OPENVINO_CACHE"
_OV_DTYPES = {"i64": "int64", "i32": "int32", "f32": "float32"}


def is_installed() -> bool:
    """Whether the `openvino` package (the extra) can be imported, without importing it."""
    return importlib.util.find_spec("openvino") is not None


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(
            f"backend='openvino' needs the OpenVINO runtime, which is not installed: {EXTRA_HINT} ({exc})."
        ) from None
    return openvino


class OpenVinoGraph:
    """An ONNX file compiled by OpenVINO for the CPU, with `session.OnnxGraph`'s attributes and call contract.

    `precision` is OpenVINO's INFERENCE_PRECISION_HINT ("bf16", "f32"); None keeps OpenVINO's own default (bf16
    on AMX CPUs, f32 elsewhere). Each calling thread gets its own infer request, so one model may be used from
    several threads at once.
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        precision: str | None = None,
        preferred_outputs: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        modality: Modality = "text",
    ) -> None:
        ov = _import_openvino()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file not found: {path}")
        self.path = path
        self._threads = check_threads(threads) or machine.usable_cores()
        settings: dict[str, Any] = {"INFERENCE_NUM_THREADS": self._threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            settings["INFERENCE_PRECISION_HINT"] = precision
        cache = cache_dir()
        if cache is not None:
            settings["CACHE_DIR"] = cache
        settings.update(config or {})
        try:  # from the path, so that a filled model cache skips reading the ONNX file as well as compiling it
            self.compiled = ov.Core().compile_model(str(path), "CPU", settings)
        except Exception as exc:  # OpenVINO raises its own types for unreadable files
            raise ModelFileError(f"OpenVINO could not load or compile {path} for the CPU: {exc}") from None
        ports = ((p.get_any_name(), _OV_DTYPES.get(p.get_element_type().get_type_name())) for p in self.compiled.inputs)
        self.input_dtypes = check_inputs(ports, modality)
        self.output_names = [_port_name(port) for port in self.compiled.outputs]
        self.output_name = choose_output(self.output_names, preferred_outputs)
        self._shapes = {
            _port_name(port): [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            if port.get_partial_shape().rank.is_static
            else None
            for port in self.compiled.outputs
        }
        self.output_width = last_dim(self._shapes[self.output_name])
        self.metadata: dict[str, str] = onnx_metadata(path)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = str(getattr(hint, "get_type_name", lambda: hint)())
        self._output_index = {name: i for i, name in enumerate(self.output_names)}
        self._local = threading.local()
        self.io_binding = False  # onnxruntime's CUDA option; kept so code that sets it on any graph works

    @property
    def input_names(self) -> list[str]:
        return list(self.input_dtypes)

    @property
    def providers(self) -> list[str]:
        return [f"{PROVIDER_NAME} ({self.inference_precision})"]

    @property
    def threads(self) -> int:
        return self._threads

    def output_shape(self, name: str | None = None) -> list[Any] | None:
        return self._shapes[name or self.output_name]

    def __call__(self, arrays: Mapping[str, Any], output: str | None = None) -> np.ndarray:
        """Run the graph on int arrays keyed by input name; returns `output` (default: the chosen one) as float32."""
        name = output or self.output_name
        return self.run(arrays, [name])[name]

    def run(self, arrays: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        feed = make_feed(arrays, self.input_dtypes)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer(feed)
        return {  # copies: the buffers are reused
            name: finite(np.array(request.get_output_tensor(self._output_index[name]).data, dtype=np.float32),
                         name, self.path)
            for name in outputs
        }  # fmt: skip


def _port_name(port: Any) -> str:
    """The name of an output as the ONNX graph declares it. An output tensor that is also a node's result has
    several names in OpenVINO (the node's `lightembed_pooling/mean` and the graph's `sentence_embedding`), and
    get_any_name() may return the node's: the names lightembed-export declares never hold a "/" (node paths do)."""
    name = str(port.get_any_name())
    if "/" in name:
        plain = sorted(n for n in port.get_names() if "/" not in n)
        if plain:
            return str(plain[0])
    return name


def cache_dir() -> str | None:
    """Where OpenVINO keeps compiled models between loads (its CACHE_DIR): LIGHTEMBED_OPENVINO_CACHE, else
    $XDG_CACHE_HOME/lightembed/openvino (~/.cache/...); "0"/"off" or an unwritable folder: no cache. A filled
    cache makes a load cost about onnxruntime's instead of ~1.5x (benchmarks/coldstart_graph.py)."""
    value = os.environ.get(ENV_CACHE, "").strip()
    if value.lower() in ("0", "off", "false", "no"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(value) if value else base / "lightembed" / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (ModelProto field 14), read by skipping over the other top-level fields, so
    neither the graph nor the `onnx` package is needed; {} for anything that is not a readable ONNX file."""
    out: dict[str, str] = {}
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos, end = 0, len(buf)
            while pos < end:
                key, pos = _varint(buf, pos)
                field, wire = key >> 3, key & 7
                if wire == 0:
                    _, pos = _varint(buf, pos)
                elif wire == 2:
                    length, pos = _varint(buf, pos)
                    if field == 14:
                        entry = _fields(buf[pos : pos + length])
                        out[entry.get(1, "")] = entry.get(2, "")
                    pos += length
                elif wire == 1:
                    pos += 8
                elif wire == 5:
                    pos += 4
                else:
                    return out
    except (OSError, ValueError, IndexError):
        return out
    return out


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise LightembedValueError("bad varint")


def _fields(data: bytes) -> dict[int, str]:
    """The string fields of a small message (StringStringEntryProto: key=1, value=2)."""
    out, pos = {}, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key & 7 != 2:
            raise LightembedValueError("unexpected field")
        length, pos = _varint(data, pos)
        out[key >> 3] = data[pos : pos + length].decode("utf-8", "replace")
        pos += length
    return out


def open_file(path: Path, options: Any) -> OpenVinoGraph:
    """The backend's opener (lightembed.graphs.policy): `path` compiled for the CPU with `options.ov_config`."""
    return OpenVinoGraph(path, options.threads, None, options.preferred_outputs, options.ov_config, options.modality)

"""The OpenVINO backend (`backend="openvino"`, the `lightembed[openvino]` extra): the exported ONNX file run by
Intel's OpenVINO runtime instead of onnxruntime, behind the same graph contract as `session.OnnxGraph`
(`graph(arrays, output) -> float32`), so tokenization, batching and pooling stay lightembed's.

On CPUs with AMX-BF16 (Intel Sapphire Rapids and later) OpenVINO runs the MatMuls in bfloat16 on AMX tiles:
~2.5x onnxruntime fp32 at min cosine >= 0.9999 to fp32 (benchmarks/amx.py, benchmarks/RESULTS.md "Issue 13").
`choose_backend` picks it with no options only where the CPU has AMX-BF16 and the exporter measured the file's
bf16 fidelity on its probes (`openvino` record in lightembed.json) at or above `AUTO_MIN_COSINE`.
"""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from lightembed.integrity import MANIFEST_NAME
from lightembed.session import position_ids, usable_cores

BACKENDS = ("onnx", "openvino")
EXTRA_HINT = 'pip install "lightembed[openvino]"'
PROVIDER_NAME = "OpenVINO:CPU"
# LIGHTEMBED_BACKEND=onnx|openvino pins what backend=None means (auto: the choice below), e.g. for a fleet
# that must give fp32-exact vectors on every CPU.
ENV_BACKEND = "LIGHTEMBED_BACKEND"
ENV_CACHE = "LIGHTEMBED_OPENVINO_CACHE"
AUTO_MIN_COSINE = 0.9999  # near-lossless: what the automatic choice demands of the exporter's bf16 measurement
INT8_MARGIN = 0.001  # how much below its onnxruntime fidelity an int8 file may be on OpenVINO and still be picked
# The exporter also runs each file on OpenVINO and onnxruntime over its calibration texts (long passages included):
# 17 probes once let all-mpnet-base-v2 through at 0.99992 while 500 real texts reached 0.99955.
TEXTS_MIN_COSINE = AUTO_MIN_COSINE
_OV_INT_TYPES = {"i64": "int64", "i32": "int32"}
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_amx_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has AMX tiles with bfloat16 (the `amx_bf16` and `amx_tile` flags)."""
    flags = cpu_flags() if flags is None else flags
    return {"amx_bf16", "amx_tile"} <= flags


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


def manifest_entry(folder: Path, onnx_path: Path) -> dict[str, Any] | None:
    """The lightembed.json record of `onnx_path` in `folder`, or None (no manifest, or the file is not in it)."""
    try:
        data = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
        relative = Path(onnx_path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    return next((e for e in files or [] if isinstance(e, dict) and e.get("path") == relative), None)


def manifest_bf16_cosine(entry: Mapping[str, Any] | None) -> float | None:
    """The min cosine the exporter measured for this file on OpenVINO in bfloat16, or None without a record."""
    record = (entry or {}).get("openvino")
    if not isinstance(record, Mapping) or record.get("inference_precision") != "bf16":
        return None
    value = (record.get("metrics") or {}).get("min_cosine")
    return float(value) if isinstance(value, (int, float)) else None


def choose_backend(
    backend: str | None,
    *,
    cpu_only: bool,
    manifest_entry: Mapping[str, Any] | None,
    flags: frozenset[str] | None = None,
) -> tuple[str, str]:
    """The backend to run and why. An explicit "onnx"/"openvino" is kept (openvino must be installed and on CPU);
    None follows LIGHTEMBED_BACKEND when it names one, else picks "openvino" only when all hold: the model runs on
    CPU, the extra is installed, the CPU has AMX-BF16, and the exporter recorded for the file in bf16 min cosine
    >= `auto_bar` to torch on its probes and >= `texts_bar` to the fp32 file on onnxruntime on its calibration texts
    (lightembed.json); else "onnx"."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or None to choose), got {backend!r}.")
    if backend is None:
        pinned = os.environ.get(ENV_BACKEND, "").strip().lower()
        if pinned not in ("", "auto", *BACKENDS):
            raise ValueError(f"{ENV_BACKEND}={pinned!r}: expected one of {BACKENDS} or 'auto'.")
        if pinned in BACKENDS:
            return _explicit(pinned, cpu_only, f"{ENV_BACKEND}={pinned}")
    if backend is not None:
        return _explicit(backend, cpu_only, "requested")
    if not cpu_only:
        return "onnx", "not on CPU"
    if not has_amx_bf16(flags):
        return "onnx", "the CPU has no AMX-BF16"
    if not is_installed():
        return "onnx", f"the openvino extra is not installed ({EXTRA_HINT})"
    cosine = manifest_bf16_cosine(manifest_entry)
    if cosine is None:
        return "onnx", "lightembed.json has no OpenVINO bf16 measurement for this file (export with openvino installed)"
    bar = auto_bar(manifest_entry)
    if cosine < bar:
        return "onnx", f"OpenVINO bf16 min cosine {cosine:.6f} < {bar} for this file on the exporter's probes"
    texts = (manifest_entry or {}).get("openvino", {}).get("texts_check")
    value = texts.get("min_cosine") if isinstance(texts, Mapping) else None
    if not isinstance(value, (int, float)):
        return "onnx", "lightembed.json has no OpenVINO check on the calibration texts for this file (re-export it)"
    bar_texts = texts_bar(texts)
    if value < bar_texts:
        return "onnx", (
            f"OpenVINO bf16 min cosine {value:.6f} < {bar_texts:.6g} to onnxruntime fp32 on the exporter's "
            f"{texts.get('texts')} calibration texts for this file"
        )
    return "openvino", f"AMX-BF16 CPU, exporter measured bf16 min cosine {cosine:.6f} (probes), {value:.6f} (texts)"


def auto_bar(entry: Mapping[str, Any] | None) -> float:
    """The min cosine to torch fp32 that OpenVINO bf16 must have reached on the probes for `backend=None` to pick
    it: AUTO_MIN_COSINE (near-lossless) for a float file; for an int8 file (the exporter's `weights` recipe, made for
    OpenVINO) what the file reached on onnxruntime, less INT8_MARGIN: the int8 drift its user chose, barely more."""
    entry = entry or {}
    measured = (entry.get("metrics") or {}).get("min_cosine") if isinstance(entry.get("metrics"), Mapping) else None
    if entry.get("quantization") and isinstance(measured, (int, float)):
        return min(AUTO_MIN_COSINE, float(measured) - INT8_MARGIN)
    return AUTO_MIN_COSINE


def texts_bar(texts_check: Mapping[str, Any]) -> float:
    """The min cosine to fp32 on the exporter's calibration texts that a file must keep on OpenVINO: TEXTS_MIN_COSINE
    for a float file; for an int8 file what it keeps on onnxruntime, less INT8_MARGIN (TEXTS_MIN_COSINE when that
    was not recorded)."""
    own = texts_check.get("onnxruntime_min_cosine")
    if isinstance(own, (int, float)):
        return min(TEXTS_MIN_COSINE, float(own) - INT8_MARGIN)
    return TEXTS_MIN_COSINE


def _explicit(backend: str, cpu_only: bool, why: str) -> tuple[str, str]:
    if backend == "openvino":
        if not cpu_only:
            raise ValueError("backend='openvino' runs on the CPU only; use device='cpu' (or backend='onnx' on CUDA).")
        _import_openvino()
    return backend, why


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
    ) -> None:
        ov = _import_openvino()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file not found: {path}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}.")
        self.threads = threads or usable_cores()
        settings: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            settings["INFERENCE_PRECISION_HINT"] = precision
        cache = cache_dir()
        if cache is not None:
            settings["CACHE_DIR"] = cache
        settings.update(config or {})
        try:  # from the path, so that a filled model cache skips reading the ONNX file as well as compiling it
            self.compiled = ov.Core().compile_model(str(path), "CPU", settings)
        except Exception as exc:  # OpenVINO raises its own types for unreadable files
            raise ValueError(f"OpenVINO could not load or compile {path} for the CPU: {exc}") from None
        self.input_dtypes: dict[str, str] = {}
        for port in self.compiled.inputs:
            name = port.get_any_name()
            if name not in _KNOWN_INPUTS:
                raise ValueError(
                    f"The ONNX graph takes an input {name!r} that lightembed cannot provide (it provides {_KNOWN_INPUTS})."
                )
            kind = port.get_element_type().get_type_name()
            if kind not in _OV_INT_TYPES:
                raise ValueError(f"The ONNX graph's input {name!r} has unsupported type {kind}.")
            self.input_dtypes[name] = _OV_INT_TYPES[kind]
        if "input_ids" not in self.input_dtypes:
            raise ValueError("The ONNX graph has no 'input_ids' input; it is not a text transformer.")
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self.output_name = next((n for n in preferred_outputs if n in self.output_names), self.output_names[0])
        shapes = {port.get_any_name(): port.get_partial_shape() for port in self.compiled.outputs}
        last = shapes[self.output_name][-1] if shapes[self.output_name].rank.is_static else None
        self.output_width: int | None = last.get_length() if last is not None and last.is_static else None
        self.metadata: dict[str, str] = onnx_metadata(path)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = str(getattr(hint, "get_type_name", lambda: hint)())
        self._output_index = {name: i for i, name in enumerate(self.output_names)}
        self._local = threading.local()
        self.io_binding = False  # onnxruntime's CUDA option; kept so code that sets it on any graph works
        self.session = _SessionView(self, shapes)

    @property
    def input_names(self) -> list[str]:
        return list(self.input_dtypes)

    def __call__(self, arrays: dict[str, Any], output: str | None = None) -> np.ndarray:
        """Run the graph on int arrays keyed by input name; returns `output` (default: the chosen one) as float32."""
        name = output or self.output_name
        if "position_ids" in self.input_dtypes and "position_ids" not in arrays:
            arrays = {**arrays, "position_ids": position_ids(arrays["attention_mask"])}
        feed = {key: np.ascontiguousarray(arrays[key], dtype=dtype) for key, dtype in self.input_dtypes.items()}
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer(feed)
        out = request.get_output_tensor(self._output_index[name]).data
        return np.array(out, dtype=np.float32)  # a copy: the request's buffer is reused by the next call


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
            raise ValueError("bad varint")


def _fields(data: bytes) -> dict[int, str]:
    """The string fields of a small message (StringStringEntryProto: key=1, value=2)."""
    out, pos = {}, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key & 7 != 2:
            raise ValueError("unexpected field")
        length, pos = _varint(data, pos)
        out[key >> 3] = data[pos : pos + length].decode("utf-8", "replace")
        pos += length
    return out


class _SessionView:
    """The part of onnxruntime's InferenceSession interface that model classes read (providers, options, outputs)."""

    def __init__(self, graph: OpenVinoGraph, shapes: Mapping[str, Any]) -> None:
        self._graph = graph
        self._shapes = shapes

    def get_providers(self) -> list[str]:
        return [f"{PROVIDER_NAME} ({self._graph.inference_precision})"]

    def get_session_options(self) -> Any:
        return SimpleNamespace(intra_op_num_threads=self._graph.threads)

    def get_outputs(self) -> list[Any]:
        return [
            SimpleNamespace(
                name=name,
                shape=[d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else None,
                type="tensor(float)",
            )
            for name, shape in self._shapes.items()
        ]

    def get_modelmeta(self) -> Any:
        return SimpleNamespace(custom_metadata_map=dict(self._graph.metadata))

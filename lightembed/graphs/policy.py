"""Which backend runs a model file, decided in one place, and the opener of each backend.

Adding a backend: a module under lightembed/graphs/ with `open_file(path, options) -> Graph`, and one line in
`OPENERS`. The automatic choice (`backend=None`) is `choose_backend`; it reads the file's manifest record.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from lightembed import env, machine
from lightembed.errors import LightembedValueError
from lightembed.graphs import openvino
from lightembed.graphs.openvino import EXTRA_HINT
from lightembed.graphs.protocol import Graph
from lightembed.manifest import FileRecord

# backend name -> the module whose open_file() opens a file for it (imported only when that backend runs)
OPENERS: dict[str, str] = {
    "onnx": "lightembed.graphs.onnxruntime",
    "openvino": "lightembed.graphs.openvino",
    "static": "lightembed.graphs.static",
}
STATIC = "static"  # a static-embedding table (lightembed.static), not a graph: NumPy runs it
BACKENDS = tuple(OPENERS)  # the built-in ones; OPENERS is what is checked, so one added there is accepted
TORCH = "torch"
# LIGHTEMBED_BACKEND=onnx|openvino pins what backend=None means (auto: the choice below), e.g. for a fleet
# that must give fp32-exact vectors on every CPU.
ENV_BACKEND = "LIGHTEMBED_BACKEND"
AUTO_MIN_COSINE = 0.9999  # near-lossless: what the automatic choice demands of the exporter's bf16 measurement
INT8_MARGIN = 0.001  # how much below its onnxruntime fidelity an int8 file may be on OpenVINO and still be picked
# The exporter also runs each file on OpenVINO and onnxruntime over its calibration texts (long passages included):
# 17 probes once let all-mpnet-base-v2 through at 0.99992 while 500 real texts reached 0.99955.
TEXTS_MIN_COSINE = AUTO_MIN_COSINE
# What an int8 file must keep to fp32 on calibration texts to be kept at all (`--quantize auto`, `lightembed tune
# --int8`): no text below 0.97, and 0.99 on average.
INT8_MIN_COSINE = 0.97
INT8_MEAN_COSINE = 0.99


@dataclass(frozen=True)
class Decision:
    """The backend to run, why, and the OpenVINO settings the choice comes with (a timed bf16 win carries its
    INFERENCE_PRECISION_HINT; settings the caller passed win over these)."""

    backend: str
    reason: str
    ov_config: dict[str, Any] = field(default_factory=dict)
    requested: bool = False
    """True when the caller (or LIGHTEMBED_BACKEND) named the backend; False when the policy chose it."""


def opener(backend: str) -> Callable[[Path, Any], Graph]:
    """The function that opens a file for `backend`."""
    found: Callable[[Path, Any], Graph] = importlib.import_module(OPENERS[backend]).open_file
    return found


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
    static_table: bool = False,
) -> tuple[str, str]:
    """The backend to run and why: `decide`'s backend and reason."""
    decision = decide(backend, cpu_only=cpu_only, manifest_entry=manifest_entry, flags=flags, static_table=static_table)
    return decision.backend, decision.reason


def decide(
    backend: str | None,
    *,
    cpu_only: bool,
    manifest_entry: Mapping[str, Any] | None,
    flags: frozenset[str] | None = None,
    static_table: bool = False,
) -> Decision:
    """Which backend runs a file. An explicit "onnx"/"openvino" is kept (openvino must be installed and on CPU);
    "torch" (sentence-transformers' default, which frameworks pass explicitly) means the default runtime, as None.
    None follows LIGHTEMBED_BACKEND when it names one; else, on CPU, a `lightembed tune` record of the file measured
    on this machine class with these onnxruntime/OpenVINO versions decides (lightembed.tune); else "openvino" only
    when all hold: the extra is installed, the CPU has AMX-BF16, and the exporter recorded for the file in bf16 min
    cosine >= `auto_bar` to torch on its probes and >= `texts_bar` to the fp32 file on onnxruntime on its
    calibration texts (lightembed.json); else "onnx". Only the record is read: nothing is timed at load. A static
    table (`static_table`, lightembed.static) runs on the `static` backend, whatever else holds."""
    if static_table:  # a table has one backend; the graph backends cannot open it
        if backend not in (None, TORCH, STATIC):
            raise LightembedValueError(f"A static-embedding model runs in NumPy (backend='static'), not {backend!r}.")
        return Decision(STATIC, "a static-embedding table runs in NumPy")
    if backend == STATIC:
        raise LightembedValueError("backend='static' runs static-embedding tables; this file is a model graph.")
    note = ""
    if backend == TORCH:
        backend, note = None, f"backend={TORCH!r} (sentence-transformers' default) runs lightembed's default; "
    if backend is not None and backend not in OPENERS:
        raise LightembedValueError(
            f"lightembed runs ONNX files on onnxruntime (backend='onnx') or OpenVINO (backend='openvino'); "
            f"backend=None (or 'torch', sentence-transformers' default) chooses; got {backend!r}."
        )
    if backend is not None:
        return Decision(*_explicit(backend, cpu_only, "requested"), requested=True)
    pinned = (env.get(ENV_BACKEND) or "").lower()
    if pinned not in ("", "auto", *OPENERS):
        raise LightembedValueError(f"{ENV_BACKEND}={pinned!r}: expected one of {tuple(OPENERS)} or 'auto'.")
    if pinned in OPENERS:
        return Decision(*_explicit(pinned, cpu_only, note + f"{ENV_BACKEND}={pinned}"), requested=True)
    timed = _measured(cpu_only, manifest_entry)
    if timed is not None:
        return replace(timed, reason=note + timed.reason)
    chosen, why = _default(cpu_only, manifest_entry, flags)
    return Decision(chosen, note + why)


def _measured(cpu_only: bool, manifest_entry: Mapping[str, Any] | None) -> Decision | None:
    """The choice a matching `lightembed tune` record makes, or None (no record for this machine class and these
    versions, or not on CPU). A record that chose OpenVINO where the extra is gone falls back to onnxruntime."""
    if not cpu_only or not manifest_entry or not manifest_entry.get("tuned") or "path" not in manifest_entry:
        return None
    tuned = FileRecord.parse(manifest_entry).tuned_for(machine.machine_class(), machine.runtime_versions())
    if tuned is None or tuned.backend not in OPENERS:
        return None
    when = tuned.raw.get("measured_at")
    source = f"lightembed tune{f', {when}' if when else ''}"
    if tuned.backend == "openvino" and not openvino.is_installed():
        return Decision("onnx", f"measured on this machine class: {tuned.label}, but the openvino extra is not "
                                f"installed ({EXTRA_HINT}); onnxruntime runs ({source})")  # fmt: skip
    fidelity = f" at min cos {tuned.min_cosine:.5f}" if tuned.min_cosine is not None else ""
    if tuned.backend == "onnx":
        best = tuned.raw.get("best_other")
        beaten = ""
        if isinstance(best, Mapping) and isinstance(best.get("speedup"), (int, float)):
            beaten = f"; the fastest other, {best.get('label')}, ran {best['speedup']:.2f}x, under the margin"
        return Decision("onnx", f"measured on this machine class: {tuned.label} kept{beaten} ({source})")
    baseline = tuned.raw.get("baseline") or "onnxruntime fp32"
    speed = f" {tuned.speedup:.2f}x {baseline}" if tuned.speedup is not None else ""
    hinted = tuned.backend == "openvino" and tuned.ov_precision
    config = {"INFERENCE_PRECISION_HINT": tuned.ov_precision} if hinted else {}
    return Decision(tuned.backend, f"measured on this machine class: {tuned.label}{speed}{fidelity} ({source})", config)


def _default(cpu_only: bool, manifest_entry: Mapping[str, Any] | None, flags: frozenset[str] | None) -> tuple[str, str]:
    if not cpu_only:
        return "onnx", "not on CPU"
    if not machine.has_amx_bf16(flags):
        return "onnx", "the CPU has no AMX-BF16"
    if not openvino.is_installed():
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
            raise LightembedValueError(
                "backend='openvino' runs on the CPU only; use device='cpu' (or backend='onnx' on CUDA)."
            )
        openvino._import_openvino()
    return backend, why

"""`--quantize auto`: one int8 file that is batch-invariant where a batch-invariant recipe is good enough, held to a
bar that says what the file keeps, and never one that misses it.

The bar (embedding models): against fp32, min cosine >= 0.97 and mean cosine >= 0.99 both on the probes (against
torch) and on the calibration texts (against the fp32 file on the runtime, long passages included); recorded with
the file as `auto_check`. The file-kind threshold of int8 files (mean >= 0.9) only catches a broken file: 0.987 on
17 probes passed it while the file was not batch-invariant and lost 0.016 of min cosine on real texts.

Order: the batch-invariant recipes first (a text gets the same vector alone or in any batch), in `preferred()`
order: per-token int8 (rowwise: scales per token and per weight column), and int8 weights with float activations
(made for OpenVINO; first where OpenVINO will run it in bf16 on AMX). The first that passes is kept and the
dynamic file this CPU's `auto` wrote (fastest on onnxruntime, but its activation scales follow the whole batch) is
deleted. Only when no batch-invariant recipe passes is the dynamic file kept, if it passes; then `last_resort()`.
When nothing passes, no int8 file is left and the export fails (exit 1) saying what each recipe measured. Other
tasks (cross-encoders, SPLADE) keep their file-kind threshold, with the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lightembed.graphs.policy import INT8_MEAN_COSINE as MEAN_COSINE
from lightembed.graphs.policy import INT8_MIN_COSINE as MIN_COSINE
from lightembed_export import quantize as quantizing

FALLBACKS: tuple[str, ...] = (quantizing.ROWWISE, quantizing.WEIGHTS)
"""The batch-invariant recipes where OpenVINO is installed, in order; where OpenVINO will run the weights file in
bf16 (an AMX-BF16 CPU) that recipe comes first: on all-mpnet-base-v2 it kept the Lee Spearman of fp32 at 1.96x fp32,
where per-token int8 lost 0.009 of it (benchmarks/RESULTS.md, "Issue 13, round 2")."""
_WRITERS = {quantizing.ROWWISE: "quantize_rowwise_file", quantizing.WEIGHTS: "quantize_weights_file"}


def _is_auto(info: dict[str, Any]) -> bool:
    return "auto" in ((info.get("quantization") or {}).get("requested_as") or ())


def _target(info: dict[str, Any]) -> str | None:
    return (info.get("quantization") or {}).get("target")


def _remove(output: Path, info: dict[str, Any]) -> None:
    path = output / info["path"]
    for part in path.parent.glob(path.name + "*"):  # the file and any external data beside it
        part.unlink()


class _Bar:
    """The auto bar on the calibration texts, with the fp32 vectors computed once."""

    def __init__(self, output: Path, fp32: Path, texts: Sequence[str] | None) -> None:
        self.output, self.fp32, self.texts = output, fp32, list(texts or ())
        self._reference: np.ndarray | None = None

    def _encode(self, file_name: str) -> np.ndarray:
        from lightembed import SentenceTransformer

        model = SentenceTransformer(str(self.output), device="cpu", file_name=file_name, backend="onnx", verify=False)
        return np.asarray(model.encode(self.texts, batch_size=8), dtype=np.float64)

    def check(self, info: dict[str, Any]) -> dict[str, Any]:
        """{probes, texts, bar, passed} for `info` (a verified embedding file)."""
        metrics = info.get("metrics") or {}
        probes = {
            "min_cosine": metrics.get("min_cosine"),
            "mean_cosine": metrics.get("mean_cosine"),
            "against": "torch",
        }
        texts: dict[str, Any] = {"texts": len(self.texts), "against": f"{self.fp32.name} on the runtime"}
        if self.texts and info.get("passed"):
            try:
                if self._reference is None:
                    self._reference = self._encode(self.fp32.relative_to(self.output).as_posix())
                from lightembed.tune import row_cosines

                cos = row_cosines(self._reference, self._encode(info["path"]))
                texts.update(min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))
            except Exception as exc:  # noqa: BLE001 - a file the runtime cannot run fails the bar, with the reason
                texts["error"] = f"{type(exc).__name__}: {exc}"
        passed = bool(info.get("passed")) and all(
            isinstance(part.get("min_cosine"), (int, float)) and part["min_cosine"] >= MIN_COSINE
            and isinstance(part.get("mean_cosine"), (int, float)) and part["mean_cosine"] >= MEAN_COSINE
            for part in (probes, texts) if part is probes or self.texts
        )  # fmt: skip
        return {"probes": probes, "texts": texts, "bar": {"min_cosine": MIN_COSINE, "mean_cosine": MEAN_COSINE},
                "passed": passed}  # fmt: skip


def _summary(info: dict[str, Any], check: dict[str, Any] | None) -> dict[str, Any]:
    metrics = info.get("metrics") or {}
    summary = {
        "target": _target(info),
        "batch_invariant": bool((info.get("quantization") or {}).get("batch_invariant")),
        "passed": bool(info.get("passed")) and (check is None or check["passed"]),
        "metric": info["threshold"]["metric"],
        "value": metrics.get(info["threshold"]["metric"]),
        "threshold": info["threshold"],
        "error": info.get("error"),
    }
    if check is not None:
        summary["auto_check"] = check
    return summary


def settle(
    files: list[dict[str, Any]],
    output: Path,
    fp32: Path,
    describe: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    verify: Callable[[list[dict[str, Any]]], Any],
    say: Callable[[str], None],
    texts: Sequence[str] | None = None,
    embeddings: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Settle `auto`'s int8 file as the module docstring says. `describe` and `verify` are the exporter's own steps
    for new files; `texts` the calibration texts of the bar (`embeddings`: the model gives sentence embeddings).
    Returns the files and a record for lightembed.json (None: no `auto` was asked for)."""
    dynamic = [f for f in files if _is_auto(f)]
    if not dynamic:
        return files, None
    bar = _Bar(output, fp32, texts) if embeddings else None
    tried: list[dict[str, Any]] = []

    def judge(info: dict[str, Any]) -> bool:
        check = bar.check(info) if bar is not None else None
        if check is not None and _is_auto(info):
            info["auto_check"] = check
        tried.append(_summary(info, check))
        return tried[-1]["passed"]

    def done(kept: dict[str, Any], why: str) -> dict[str, Any]:
        say(f"quantize auto: {kept['path']} ({why})")
        record: dict[str, Any] = {"kept": kept["path"], "why": why, "tried": tried}
        if bar is not None:
            record["bar"] = {
                "min_cosine": MIN_COSINE,
                "mean_cosine": MEAN_COSINE,
                "on": ["probes", f"{len(bar.texts)} calibration texts"],
            }
        return record

    def attempt(target: str, reason: str) -> dict[str, Any] | None:
        nonlocal files
        existing = next((f for f in files if _target(f) == target), None)
        if existing is not None:  # asked for explicitly as well: already written and verified
            return existing if judge(existing) else None
        written = getattr(quantizing, _WRITERS[target])(fp32)
        config = dict(written.config, requested_as=["auto"], auto_reason=reason)
        (info,) = describe([{"file": written.path, "kind": "quantized", "quantization": config}])
        verify([info])
        if judge(info):
            files = files + [info]
            return info
        _remove(output, info)
        return None

    for target in preferred():
        kept = attempt(target, f"auto: {target} is batch-invariant, preferred to the dynamic file")
        if kept is not None:
            for info in dynamic:
                if info is not kept:
                    _remove(output, info)
            files = [f for f in files if f not in dynamic or f is kept]
            return files, done(kept, f"{target}: batch-invariant, keeps the bar")
    for info in dynamic:
        if judge(info):
            return files, done(
                info, "dynamic: no batch-invariant recipe keeps the bar; a text's vector depends on its batch"
            )
        _remove(output, info)
    files = [f for f in files if f not in dynamic]
    for target in last_resort():
        kept = attempt(target, "auto: neither the batch-invariant recipes nor the dynamic file keep the bar")
        if kept is not None:
            return files, done(kept, f"{target}: the last recipe left")
    why = "; ".join(f"{t['target']}: {_describe(t)}" for t in tried)
    say(f"quantize auto: no int8 recipe passes its check ({why}); no int8 file written")
    return files, {"kept": None, "tried": tried, "why": why}


def preferred() -> tuple[str, ...]:
    """The batch-invariant recipes `auto` tries before the dynamic file, in order for this machine: both where
    OpenVINO is installed (the weights file first on an AMX-BF16 CPU), per-token int8 alone elsewhere (onnxruntime
    dequantizes the weights file at every run: slower than fp32 there)."""
    from lightembed import machine
    from lightembed.graphs import openvino as openvino_backend

    if not openvino_backend.is_installed():
        return (quantizing.ROWWISE,)
    if machine.has_amx_bf16():
        return (quantizing.WEIGHTS, quantizing.ROWWISE)
    return FALLBACKS


def last_resort() -> tuple[str, ...]:
    """What is tried after the dynamic file: the recipes `preferred()` left out."""
    return tuple(t for t in FALLBACKS if t not in preferred())


def _describe(summary: dict[str, Any]) -> str:
    bound = "max" if "max" in summary["threshold"] else "min"
    sign = "<=" if bound == "max" else ">="
    value = summary["value"]
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    text = f"{summary['metric']} {shown}, needs {sign} {summary['threshold'][bound]:g}"
    check = summary.get("auto_check")
    if check is not None and not check["passed"] and summary.get("error") is None:
        parts = [f"{name} min {p.get('min_cosine')!s:.7} mean {p.get('mean_cosine')!s:.7}"
                 for name, p in (("probes", check["probes"]), ("texts", check["texts"]))]  # fmt: skip
        text += f"; auto bar min >= {MIN_COSINE}, mean >= {MEAN_COSINE} missed ({', '.join(parts)})"
    return f"{text}; {summary['error']}" if summary.get("error") else text

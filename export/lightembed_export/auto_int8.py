"""`--quantize auto` never leaves an int8 file that fails its own check.

`auto` first writes this CPU's dynamic int8 file (the fastest recipe). When that file misses its threshold, it is
deleted and the recipes of FALLBACKS are tried in order (per-token int8, whose scales follow each token and keep
outliers from coarsening the rest: benchmarks/int8_layers.py; then int8 weights with float activations, the file
made for OpenVINO); the first that passes is kept. When none passes,
no int8 file is left and the export fails (exit 1) saying what each recipe measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lightembed_export import quantize as quantizing

FALLBACKS: tuple[str, ...] = (quantizing.ROWWISE, quantizing.WEIGHTS)
"""The order on most machines; where OpenVINO will run the weights file (its extra installed, an AMX-BF16 CPU)
that recipe comes first: on all-mpnet-base-v2 it kept the Lee Spearman of fp32 at 1.96x fp32, where per-token int8
lost 0.009 of it (benchmarks/RESULTS.md, "Issue 13, round 2")."""
_WRITERS = {quantizing.ROWWISE: "quantize_rowwise_file", quantizing.WEIGHTS: "quantize_weights_file"}


def _is_auto(info: dict[str, Any]) -> bool:
    return "auto" in ((info.get("quantization") or {}).get("requested_as") or ())


def _remove(output: Path, info: dict[str, Any]) -> None:
    path = output / info["path"]
    for part in path.parent.glob(path.name + "*"):  # the file and any external data beside it
        part.unlink()


def _summary(info: dict[str, Any]) -> dict[str, Any]:
    metrics = info.get("metrics") or {}
    return {
        "target": (info.get("quantization") or {}).get("target"),
        "passed": bool(info.get("passed")),
        "metric": info["threshold"]["metric"],
        "value": metrics.get(info["threshold"]["metric"]),
        "threshold": info["threshold"],
        "error": info.get("error"),
    }


def settle(
    files: list[dict[str, Any]],
    output: Path,
    fp32: Path,
    describe: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    verify: Callable[[list[dict[str, Any]]], Any],
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Replace a failing `auto` int8 file by the first fallback recipe that passes. `describe` and `verify` are the
    exporter's own steps for new files. Returns the files and a record for lightembed.json (None: nothing to do)."""
    failing = [f for f in files if _is_auto(f) and not f["passed"]]
    if not failing:
        return files, None
    tried = [_summary(f) for f in failing]
    for info in failing:
        _remove(output, info)
    files = [f for f in files if f not in failing]
    for target in fallbacks():
        existing = next((f for f in files if (f.get("quantization") or {}).get("target") == target), None)
        if existing is not None:  # asked for explicitly as well: already written and verified
            tried.append(_summary(existing))
            if existing["passed"]:
                return files, {"kept": existing["path"], "tried": tried}
            continue
        done = getattr(quantizing, _WRITERS[target])(fp32)
        reason = f"auto: {tried[0]['target']} missed its check ({_describe(tried[0])}); fell back to {target}"
        config = dict(done.config, requested_as=["auto"], auto_reason=reason)
        (info,) = describe([{"file": done.path, "kind": "quantized", "quantization": config}])
        verify([info])
        tried.append(_summary(info))
        if info["passed"]:
            say(f"quantize {reason}: {info['path']} ({_describe(tried[-1])})")
            return files + [info], {"kept": info["path"], "tried": tried}
        _remove(output, info)
    why = "; ".join(f"{t['target']}: {_describe(t)}" for t in tried)
    say(f"quantize auto: no int8 recipe passes its check ({why}); no int8 file written")
    return files, {"kept": None, "tried": tried, "why": why}


def fallbacks() -> tuple[str, ...]:
    """FALLBACKS in the order for this machine."""
    from lightembed import machine
    from lightembed.graphs import openvino as openvino_backend

    if openvino_backend.is_installed() and machine.has_amx_bf16():
        return (quantizing.WEIGHTS, quantizing.ROWWISE)
    return FALLBACKS


def _describe(summary: dict[str, Any]) -> str:
    bound = "max" if "max" in summary["threshold"] else "min"
    sign = "<=" if bound == "max" else ">="
    value = summary["value"]
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    text = f"{summary['metric']} {shown}, needs {sign} {summary['threshold'][bound]:g}"
    return f"{text}; {summary['error']}" if summary.get("error") else text

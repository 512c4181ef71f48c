"""What the numbers were taken on: CPU, usable cores, load, package versions."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
from pathlib import Path

PACKAGES = (
    "lightembed",
    "onnxruntime",
    "numpy",
    "tokenizers",
    "torch",
    "sentence-transformers",
    "transformers",
    "optimum",
    "fastembed",
    "lightembed-export",
)


def cpu_info() -> dict:
    model, mhz, flags = "unknown", None, []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == "unknown":
            model = value
        elif key == "cpu MHz" and mhz is None:
            mhz = float(value)
        elif key == "flags" and not flags:
            flags = value.split()
    simd = sorted(f for f in flags if f.startswith("avx") or f in ("fma", "amx_int8", "amx_bf16"))
    return {"model": model, "mhz": mhz, "flags": simd, "logical_cpus": os.cpu_count()}


def usable_cores() -> int:
    try:
        from lightembed.machine import usable_cores as lightembed_cores

        return int(lightembed_cores())
    except Exception:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    if out.get("lightembed-export") is None:
        out["lightembed-export"] = "from ./export (not pip-installed)" if (
            Path(__file__).resolve().parent.parent / "export" / "lightembed_export"
        ).is_dir() else None
    return out


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine() -> dict:
    return {
        "cpu": cpu_info(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }

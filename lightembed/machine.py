"""The machine's facts, read in one place: CPU flags and identity, usable cores (affinity and cgroup quota), GPU
count, and the machine-class key that measured records (pre-optimized copies, backend choices) are tied to."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = "/proc/cpuinfo"
# Flags whose presence changes which kernels or rewrites onnxruntime and OpenVINO pick (x86 and arm64 spellings).
ISA_FLAGS = frozenset(
    {
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
        "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
        "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
    }
)  # fmt: skip


def _cpuinfo_fields(cpuinfo: str | Path = CPUINFO) -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo ({} where it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    fields = _cpuinfo_fields(cpuinfo)
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())


def has_amx_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has AMX tiles with bfloat16 (the `amx_bf16` and `amx_tile` flags)."""
    flags = cpu_flags() if flags is None else flags
    return {"amx_bf16", "amx_tile"} <= flags


def isa(flags: frozenset[str] | None = None) -> list[str]:
    """The instruction-set flags (of ISA_FLAGS) this CPU has, sorted."""
    return sorted((cpu_flags() if flags is None else flags) & ISA_FLAGS)


def cpu_identity(cpuinfo: str | Path = CPUINFO) -> dict[str, str]:
    """Vendor, family, model and model name of the CPU (empty strings where Linux does not say)."""
    fields = _cpuinfo_fields(cpuinfo)
    return {
        "vendor": fields.get("vendor_id") or fields.get("CPU implementer", ""),
        "family": fields.get("cpu family") or fields.get("CPU architecture", ""),
        "model": fields.get("model") or fields.get("CPU part", ""),
        "model_name": fields.get("model name", ""),
    }


def onnxruntime_build() -> dict[str, Any]:
    """What a pre-optimized copy is tied to: architecture, onnxruntime version, instruction-set flags."""
    import onnxruntime

    return {"machine": platform.machine(), "onnxruntime": onnxruntime.__version__, "isa": isa()}


def machine_class() -> dict[str, Any]:
    """The key a measured choice is recorded under: architecture, CPU vendor/family/model and its ISA flags.
    Two machines with equal keys run the same kernels, so a timing made on one holds on the other."""
    identity = cpu_identity()
    return {
        "machine": platform.machine(),
        "vendor": identity["vendor"],
        "family": identity["family"],
        "model": identity["model"],
        "isa": isa(),
    }


def runtime_versions() -> dict[str, str | None]:
    """The installed onnxruntime and OpenVINO versions (None: not installed), without importing either: with the
    machine class, what a timed backend choice is tied to (lightembed.tune)."""
    return {
        "onnxruntime": package_version("onnxruntime", ("onnxruntime", "onnxruntime_gpu", "onnxruntime_openvino")),
        "openvino": package_version("openvino", ("openvino",)),
    }


def package_version(module: str, distributions: tuple[str, ...]) -> str | None:
    """The version of the distribution (one of `distributions`, in dist-info spelling) that installed `module`, read
    from the name of its .dist-info folder beside it: one directory listing, where importlib.metadata costs ~50 ms
    to import (a cold-start cost: the policy asks at every load with a tuned record). None: not installed."""
    import importlib.util
    import re

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    wanted = {name.lower() for name in distributions}
    for location in spec.submodule_search_locations:
        try:
            entries = os.listdir(Path(location).parent)
        except OSError:
            continue
        for entry in entries:
            found = re.fullmatch(r"(.+?)-([^-]+)\.dist-info", entry)
            if found and found.group(1).lower() in wanted:
                return found.group(2)
    from importlib import metadata  # not installed from a wheel: ask the slow way

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def usable_cores() -> int:
    """Cores this process may actually use: CPU affinity, capped by a cgroup CPU quota if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota + 0.999)))
    return max(1, cores)


def cgroup_cpu_quota() -> float | None:
    """The cgroup CPU quota in cores (v2 cpu.max or v1 cfs quota/period), or None when there is none."""
    try:  # cgroup v2
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else the lines of `nvidia-smi -L` (1 when that
    cannot run: CUDA was asked for, so assume the one GPU onnxruntime will find or refuse)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        return 1


def affinity() -> list[int]:
    """The cores this process may run on, sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))

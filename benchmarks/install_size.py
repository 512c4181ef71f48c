"""Installed size: each stack pip-installed into its own fresh `python -m venv`, site-packages measured.

Opt-in (`python -m benchmarks.run --install-size`, or `python -m benchmarks.install_size`): it downloads and
installs torch, so it takes minutes and needs the package registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from benchmarks.paths import REPO_DIR

STACKS: tuple[tuple[str, list[str]], ...] = (
    ("lightembed", [str(REPO_DIR)]),
    ("sentence-transformers + torch (CPU)", ["torch==2.13.0", "sentence-transformers"]),
    ("fastembed", ["fastembed"]),
)


def tree_size(folder: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of the files under `folder` (symlinks not followed)."""
    apparent = allocated = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            apparent += st.st_size
            allocated += getattr(st, "st_blocks", 0) * 512
    return apparent, allocated


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _largest(site: Path, baseline: set[str], top: int = 6) -> list[tuple[str, float]]:
    """The biggest top-level entries the install added (not pip and what the empty venv already had)."""
    sizes = []
    for entry in site.iterdir():
        if entry.name.endswith((".dist-info", ".pth")) or entry.name in baseline or entry.name == "__pycache__":
            continue
        size = tree_size(entry)[0] if entry.is_dir() else entry.lstat().st_size
        sizes.append((entry.name, size / 1e6))
    return sorted(sizes, key=lambda x: -x[1])[:top]


def measure_stack(label: str, requirements: list[str], workdir: Path, echo: Callable[[str], None]) -> dict:
    venv = workdir / label.split()[0].replace("/", "_")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = site_packages(venv)
    empty = tree_size(site)[0]
    baseline = {entry.name for entry in site.iterdir()}
    started = time.perf_counter()
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"pip install failed: {(done.stderr or done.stdout)[-800:]}"}
    apparent, allocated = tree_size(site)
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=False).stdout.split()
    torch_line = next((line for line in freeze if line.lower().startswith("torch==")), None)
    out = {
        "requirements": requirements,
        "site_packages_mb": apparent / 1e6,
        "allocated_mb": allocated / 1e6,
        "empty_venv_mb": empty / 1e6,
        "added_mb": (apparent - empty) / 1e6,
        "packages": len(freeze),
        "largest": _largest(site, baseline),
        "install_s": elapsed,
        "torch": torch_line,
    }
    echo(f"[install-size] {label:<38} {out['added_mb']:8.1f} MB in {out['packages']} packages ({elapsed:.0f} s)")
    if torch_line and "+cpu" not in torch_line:
        echo(f"[install-size]   WARNING: {torch_line} is not the CPU build")
    return out


def measure_install_sizes(echo: Callable[[str], None] = print) -> dict[str, dict]:
    workdir = Path(tempfile.mkdtemp(prefix="lightembed-install-size-"))
    try:
        return {label: measure_stack(label, reqs, workdir, echo) for label, reqs in STACKS}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(measure_install_sizes(), indent=1))

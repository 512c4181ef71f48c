"""Runs tests/st6.py with sentence-transformers 6: in this interpreter when it has 6.x (the default stack of
scripts/setup.sh), else in the python named by LIGHTEMBED_ST6_PYTHON or a `.venv-st6`; and lists the public names
of the 5.x stack's sentence-transformers from `.venv-st5` (LIGHTEMBED_ST5=1 scripts/setup.sh; CI builds it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _major(python: str) -> int:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('sentence-transformers'))"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return int(done.stdout.split(".")[0]) if done.returncode == 0 and done.stdout.strip() else 0


def st6_python() -> str:
    """A python with sentence-transformers 6; the test is skipped (a failure in CI) where there is none."""
    if _major(sys.executable) >= 6:
        return sys.executable
    python = os.environ.get("LIGHTEMBED_ST6_PYTHON") or str(ROOT / ".venv-st6" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"no sentence-transformers 6 venv at {python} (scripts/setup.sh makes .venv-st6)")
    return python


def run_st6(*args: str, timeout: int = 900, python: str | None = None) -> str:
    """`python -m tests.st6 ARGS` in the 6.x venv (or `python`); its stdout (an error with its stderr if it fails)."""
    done = subprocess.run(
        [python or st6_python(), "-m", "tests.st6", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"tests.st6 {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build(out: Path, *cases: str) -> Path:
    """Folders and reference vectors made by sentence-transformers 6.2 for `cases` (tests/st6.py), under `out`."""
    run_st6(str(out), *cases)
    return out


def public_names(python: str | None = None) -> dict[str, Any]:
    """sentence-transformers' public names per class, of util and of the package (tests/st6.py --names), in
    `python` (default: the 6.x one)."""
    return json.loads(run_st6("--names", python=python).strip().splitlines()[-1])


def st5_python() -> str:
    """The 5.x stack's python (`.venv-st5`, or LIGHTEMBED_ST5_PYTHON); skipped (a failure in CI) without one."""
    python = os.environ.get("LIGHTEMBED_ST5_PYTHON") or str(ROOT / ".venv-st5" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"no sentence-transformers 5 venv at {python} (LIGHTEMBED_ST5=1 scripts/setup.sh makes .venv-st5)")
    return python

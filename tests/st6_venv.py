"""Runs tests/st6.py in the sentence-transformers 6 venv (`.venv-st6`, made by scripts/setup.sh, or the python
named by LIGHTEMBED_ST6_PYTHON): the main venv holds 5.x, and 6.2 needs transformers 5, which cannot share it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def st6_python() -> str:
    """The sentence-transformers 6 venv's python; the test is skipped (a failure in CI) where there is none."""
    python = os.environ.get("LIGHTEMBED_ST6_PYTHON") or str(ROOT / ".venv-st6" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"no sentence-transformers 6 venv at {python} (scripts/setup.sh makes .venv-st6)")
    return python


def run_st6(*args: str, timeout: int = 900) -> str:
    """`python -m tests.st6 ARGS` in the 6.x venv; its stdout (an error with its stderr if it fails)."""
    done = subprocess.run(
        [st6_python(), "-m", "tests.st6", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"tests.st6 {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build(out: Path, *cases: str) -> Path:
    """Folders and reference vectors made by sentence-transformers 6.2 for `cases` (tests/st6.py), under `out`."""
    run_st6(str(out), *cases)
    return out


def public_names() -> dict[str, Any]:
    """sentence-transformers 6.2's public names per class, of util and of the package (tests/st6.py --names)."""
    return json.loads(run_st6("--names").strip().splitlines()[-1])

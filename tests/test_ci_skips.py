"""The CI skip rule (tests/ci_skips.py): with CI=true a skip fails the run unless it is a CUDA test's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MISSING_MODULE = '''
import pytest

pytest.importorskip("a_module_that_ci_forgot_to_install")


def test_never_runs():
    pass
'''

SKIPS = '''
import pytest


def test_passes():
    pass


def test_cuda_only():
    pytest.skip("onnxruntime offers no CUDAExecutionProvider here")


@pytest.fixture
def data():
    pytest.skip("the data package is not installed")


def test_needs_data(data):
    pass


@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
'''


def _run(folder: Path, ci: str | None) -> tuple[int, dict[str, int], str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider", "-q", "-rA", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = proc.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", summary)}
    return proc.returncode, counts, proc.stdout


def test_a_skipped_module_fails_collection_in_ci(tmp_path: Path) -> None:
    (tmp_path / "test_missing.py").write_text(MISSING_MODULE)
    code, counts, out = _run(tmp_path, "true")
    assert code == 2 and counts == {"error": 1}, out  # a collection error stops the run
    assert "a_module_that_ci_forgot_to_install" in out and "only the CUDA tests may skip" in out
    code, counts, out = _run(tmp_path, None)  # outside CI a skip stays a skip
    assert code == 5 and counts == {"skipped": 1}, out  # 5: no tests ran


def test_skipped_tests_fail_in_ci_except_cuda(tmp_path: Path) -> None:
    (tmp_path / "test_skips.py").write_text(SKIPS)
    code, counts, out = _run(tmp_path, "true")
    assert code == 1, out
    assert counts == {"passed": 1, "skipped": 1, "xfailed": 1, "error": 1}, out  # the fixture's skip: an error
    assert re.search(r"SKIPPED .*CUDAExecutionProvider", out), out
    assert re.search(r"ERROR .*test_needs_data - skipped in CI .*data package", out), out
    for ci in (None, "false"):
        code, counts, out = _run(tmp_path, ci)
        assert code == 0 and counts == {"passed": 1, "skipped": 2, "xfailed": 1}, out


SLOW = '''
import pytest


def test_quick():
    pass


@pytest.mark.slow
def test_long():
    pass
'''


def test_slow_tests_run_only_when_asked_and_are_not_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "test_slow.py").write_text(SLOW)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: long\n")
    monkeypatch.delenv("LIGHTEMBED_SLOW", raising=False)
    for ci in ("true", None):  # deselected, not skipped: no CI failure
        code, counts, out = _run(tmp_path, ci)
        assert code == 0 and counts == {"passed": 1} and "1 deselected" in out, out
    monkeypatch.setenv("LIGHTEMBED_SLOW", "1")
    code, counts, out = _run(tmp_path, "true")
    assert code == 0 and counts == {"passed": 2}, out


def test_this_suite_runs_with_the_rule(pytestconfig: pytest.Config) -> None:
    from tests import ci_skips

    hooks = pytestconfig.pluginmanager.hook
    assert ci_skips.pytest_runtest_makereport in [i.function for i in hooks.pytest_runtest_makereport.get_hookimpls()]
    assert ci_skips.pytest_make_collect_report in [i.function for i in hooks.pytest_make_collect_report.get_hookimpls()]
    deselect = [i.function for i in hooks.pytest_collection_modifyitems.get_hookimpls()]
    assert ci_skips.pytest_collection_modifyitems in deselect

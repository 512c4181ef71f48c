"""A pytest plugin for what CI runs: in CI (env CI=true) a skipped test or module fails the run, unless its reason
names CUDA; tests marked `slow` are deselected unless LIGHTEMBED_SLOW=1, in CI and out.

CI installs every dependency of the suite (scripts/setup.sh), so a skip there means an install step broke
(e.g. optimum stops importing and `pytest.importorskip` skips a whole file). Only the CUDA tests may skip,
since CI has no GPU. Outside CI, skips stay skips so a partial checkout can still run what it has. Slow tests
are left out by deselection, not by a skip: they are not part of what CI is meant to run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

ALLOWED_SKIP_WORD = "CUDA"


def in_ci() -> bool:
    """Whether the environment says this is CI (CI=true, as CI services set it; .ci/run sets it too)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_reason(report: Any) -> str:
    """The reason of a skipped report (pytest stores it as (path, line, reason))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def fail_skip_in_ci(report: Any) -> None:
    """Turn a skipped test or collection report into a failure when in CI and the reason is not CUDA."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if ALLOWED_SKIP_WORD in reason:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI (CI=true), where only the CUDA tests may skip: {reason}\n"
        "Install what this test needs in scripts/setup.sh (CI runs it on a fresh machine)."
    )


def slow_opted_in() -> bool:
    """Whether LIGHTEMBED_SLOW=1 asks for the tests marked `slow`."""
    return os.environ.get("LIGHTEMBED_SLOW", "").strip() == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if slow_opted_in():
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    report = yield
    fail_skip_in_ci(report)
    return report

"""benchmarks/RESULTS.md as run.py rewrites it: its own part is regenerated, the sections below KEEP_MARKER (written
by hand and by the other benchmarks) are kept. No imports beyond the standard library, so that reading this costs
nothing (benchmarks.report imports the runners, which set the offline variables of the Hugging Face libraries)."""

from __future__ import annotations

KEEP_MARKER = "<!-- kept by benchmarks/run.py -->"
"""The line of RESULTS.md after which run.py keeps what is there (the other benchmarks' sections)."""


def with_kept_sections(generated: str, existing: str | None) -> str:
    """`generated` followed by the marker and everything after it in `existing` (nothing kept when the existing
    file has no marker: a file run.py wrote alone)."""
    line = "\n" + KEEP_MARKER + "\n"  # on a line of its own (the header names it too)
    if existing is None or line not in existing:
        return generated
    kept = existing.split(line, 1)[1]
    return generated.rstrip("\n") + "\n" + line + kept

"""deploy/prune.py: deletes the globs of a list (comments, blanks, no matches are fine), refuses paths outside the
folder, honours $PRUNE, and fails when a module it must import no longer imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
from prune import patterns, prune  # noqa: E402

SCRIPT = ROOT / "deploy" / "prune.py"


def make_site(root: Path) -> Path:
    site = root / "site"
    for rel in ("keep/__init__.py", "drop/__init__.py", "ns/only/__init__.py", "ns2/gone/x.py", "ns2/stays.py", "drop-1.0.dist-info/METADATA", "pkg/tests/test_x.py",
                "pkg/__init__.py", "pkg/a.pyi", "pkg/sub/b.pyi"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x = 1\n")
    return site


def test_prune_deletes_listed_globs_only(tmp_path):
    site = make_site(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n\ndrop  # why\ndrop-*.dist-info\n*/tests\n**/*.pyi\nnot_installed\n"
                       "ns/only\nns2/gone\n")
    freed = prune(site, listing)
    left = sorted(str(p.relative_to(site)) for p in site.rglob("*"))
    assert left == ["keep", "keep/__init__.py", "ns2", "ns2/stays.py", "pkg", "pkg/__init__.py"]  # pkg/sub held only b.pyi
    assert freed == 7 * len("x = 1\n")


@pytest.mark.parametrize("line", ["/etc", "../x", "a/../../b"])
def test_patterns_must_stay_inside(tmp_path, line):
    listing = tmp_path / "list.txt"
    listing.write_text(line + "\n")
    with pytest.raises(ValueError, match="inside the folder"):
        patterns(listing)


def test_cli_reads_prune_env_and_checks_imports(tmp_path):
    site = make_site(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("drop\n")
    env = {"PRUNE": str(listing), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, str(SCRIPT), str(site), "--check", "keep", "absent_pkg?"],
                        env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "imports keep" in ok.stdout and not (site / "drop").exists()
    bad = subprocess.run([sys.executable, str(SCRIPT), str(site), "--check", "drop"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "No module named 'drop'" in bad.stderr


def test_shipped_list_keeps_what_serving_imports():
    """The real list never names a package the image runs (the container test proves it end to end)."""
    listed = {p for p in patterns(ROOT / "deploy" / "prune.txt") if "/" not in p}  # whole packages
    assert not listed & {"lightembed", "numpy", "onnxruntime", "tokenizers", "starlette", "uvicorn", "anyio",
                         "click", "h11", "awslambdaric", "prometheus_client", "typing_extensions", "idna"}
    assert "huggingface_hub" in listed and "onnxruntime/capi/libonnxruntime.so*" in patterns(
        ROOT / "deploy" / "prune.txt")

"""Remote-code checkpoints (modeling code in the model's folder, as nomic-embed-text and gte v1.5 ship): exported
only with trust_remote_code, said loudly; the exported folder runs without that code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration
FAMILY = families.Family("remote", families.remote_bert, "mean", "", trust_remote_code=True, optimize=None)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return FAMILY.make(tmp_path_factory.mktemp("remote") / "st")


def test_refused_without_the_flag(source, tmp_path):
    from lightembed_export import UnsupportedModelError, export_model

    with pytest.raises(UnsupportedModelError) as refused:
        export_model(source, tmp_path / "out", verbose=False)
    message = str(refused.value)
    assert refused.value.architecture == "TinyRemoteModel"
    for part in ("TinyRemoteModel", "tiny_remote_bert", "modeling_tiny_remote.py", "--trust-remote-code"):
        assert part in message
    assert not (tmp_path / "out").exists()


def test_cli_has_the_flag():
    from lightembed_export.cli import build_parser

    args = build_parser().parse_args(["model", "-o", "out", "--trust-remote-code"])
    assert args.trust_remote_code is True
    assert build_parser().parse_args(["model", "-o", "out"]).trust_remote_code is False


def test_exported_with_the_flag_runs_without_the_code(source, tmp_path, monkeypatch, capsys):
    import sentence_transformers

    from lightembed_export import export_model

    marker = tmp_path / "imported-at-export"
    monkeypatch.setenv(families.REMOTE_MARKER_ENV, str(marker))
    out = tmp_path / "out"
    report = export_model(source, out, trust_remote_code=True, verbose=False)
    assert "WARNING: trust_remote_code is on" in capsys.readouterr().err  # said even with verbose=False
    assert marker.is_file()  # the folder's code ran at export (inside sentence-transformers and the exporter)
    assert report["files"][0]["passed"]

    ref = sentence_transformers.SentenceTransformer(str(source), device="cpu", trust_remote_code=True).encode(
        families.TEXTS, show_progress_bar=False
    )
    runtime_marker = tmp_path / "imported-at-runtime"
    script = (
        "import json, sys, lightembed\n"
        f"model = lightembed.SentenceTransformer({str(out)!r}, device='cpu')\n"
        f"emb = model.encode({families.TEXTS!r})\n"
        "mods = [m for m in sys.modules if 'tiny_remote' in m or 'transformers_modules' in m]\n"
        "print(json.dumps({'emb': emb.tolist(), 'mods': mods}))\n"
    )
    env = {**os.environ, families.REMOTE_MARKER_ENV: str(runtime_marker)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mods"] == [] and not runtime_marker.exists()
    got = np.asarray(result["emb"])
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 1 - 1e-6

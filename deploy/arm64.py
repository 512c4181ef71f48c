"""An arm64 Python with lightembed on an x86 host: a Debian bookworm arm64 root filesystem (mmdebstrap) run
through qemu-aarch64-static, with the arm64 wheels of lightembed and its dependencies installed for it.

    python deploy/arm64.py WORK_DIR            # prepare WORK_DIR/root and WORK_DIR/site, print their sizes
    python deploy/arm64.py WORK_DIR -- -c "import platform; print(platform.machine())"   # run arm64 Python

Emulated: the numbers it gives are for parity only; its timings say nothing about arm64 hardware.
onnxruntime is pinned to 1.20.1 here because 1.32's arm64 wheel segfaults at import under qemu-user 7.2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = "3.11"  # bookworm's python3
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
ORT_PIN = "onnxruntime==1.20.1"


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def prepare(work: Path) -> tuple[Path, Path]:
    """WORK/root (arm64 root filesystem with python3, built once) and WORK/site (lightembed's wheel and the arm64
    wheels of its dependencies, installed as pip would on the device)."""
    work.mkdir(parents=True, exist_ok=True)
    root, site = work / "root", work / "site"
    if not (root / "usr" / "bin" / f"python{PY}").exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["mmdebstrap", "--variant=extract", "--arch=arm64", "--include=python3,libstdc++6",
                        "bookworm", str(root)], check=True, capture_output=True, timeout=900)
    with tempfile.TemporaryDirectory() as tmp:
        src, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "lightembed", src / "lightembed", ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(wheels), str(src)], check=True, capture_output=True, timeout=600)
        wheel = next(wheels.glob("lightembed-*.whl"))
        shutil.rmtree(site, ignore_errors=True)
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(site),
                        "--only-binary=:all:", *platforms, "--python-version", PY, "--implementation", "cp",
                        str(wheel), ORT_PIN], check=True, capture_output=True, timeout=900)
    return root, site


def command(root: Path, site: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run `python3 -P ARGS` as arm64 under qemu with `site` on the path (-P: not the
    current folder, so lightembed comes from `site`)."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        raise FileNotFoundError("qemu-aarch64-static is not installed: run `bash deploy/host_setup.sh` as root")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", QEMU_LD_PREFIX=str(root))
    return [qemu, "-L", str(root), str(root / "usr" / "bin" / f"python{PY}"), "-P", *args], env


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    work, rest = Path(argv[0]), argv[2:] if argv[1:2] == ["--"] else []
    root, site = prepare(work) if not rest else (work / "root", work / "site")
    if rest:
        cmd, env = command(root, site, *rest)
        return subprocess.run(cmd, env=env).returncode
    print(f"root filesystem {folder_mb(root):.0f} MB, site-packages {folder_mb(site):.0f} MB ({site})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

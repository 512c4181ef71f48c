"""The runtime never imports the heavy stack, checked in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "optimum", "sentence_transformers", "scipy")
"""scipy only for HierarchicalTokenPooling, imported when it runs."""

CODE = """
import json, sys
import lightembed
from lightembed import MultiVectorEncoder, SentenceTransformer, SimilarityFunction, util
from lightembed import multi_vector, maxsim
util.maxsim([[[1.0, 0.0]]], [[[0.5, 0.5]]])
m = SentenceTransformer(sys.argv[1])
e = m.encode(["hello world", "the cat"])
s = util.cos_sim(e, e)
print(json.dumps({"heavy": sorted(k for k in sys.modules if k.split(".")[0] in %r),
                  "hub": "huggingface_hub" in sys.modules, "shape": list(e.shape), "sim": s.shape[0]}))
""" % (HEAVY,)


def test_fresh_process_imports_nothing_heavy(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-c", CODE, str(tiny_model)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["shape"] == [2, 8] and result["sim"] == 2
    assert result["hub"] is False, "a local folder must not import huggingface_hub (cold start)"


# Modules lightembed needs only on rare paths (errors, warnings, Hub ids, progress bars); importing them up front
# costs cold start (importlib.metadata alone was ~40 ms).
LAZY = ("importlib.metadata", "logging", "huggingface_hub", "tqdm")
LOADED = "import json, sys\n%s\nprint(json.dumps(sorted(m for m in %r if m in sys.modules)))"


def _loaded_after(statements: str, *args: str) -> set[str]:
    code = LOADED % (statements, LAZY)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_cold_start_imports_only_what_the_call_needs(tiny_model):
    baseline = _loaded_after("import numpy, onnxruntime, tokenizers")  # what the dependencies import themselves
    used = _loaded_after(
        "from lightembed import SentenceTransformer\nSentenceTransformer(sys.argv[1], device='cpu').encode('hi')",
        str(tiny_model),
    )
    assert used - baseline == set()


def test_heavy_packages_are_not_runtime_dependencies():
    from importlib import metadata

    try:
        requires = metadata.requires("lightembed") or []
    except metadata.PackageNotFoundError:
        pytest.skip("lightembed is not installed as a distribution")
    names = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
        for r in requires
        if "extra ==" not in r
    }
    assert names == {"numpy", "onnxruntime", "tokenizers", "huggingface-hub"}

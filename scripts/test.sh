#!/usr/bin/env bash
# Sets up .venv and runs the test suite (unit tests on tiny models + integration tests on real MiniLM weights).
# With LIGHTEMBED_ST5=1, setup.sh also builds .venv-st5 (sentence-transformers 5 with optimum's exporter) and the
# exporter's tests run there a second time (ST5_TESTS).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# The type checker first ([tool.mypy] in pyproject.toml): a typing error fails the run like a failing test.
python -m mypy
python -m pytest -q -ra "$@"
ST5_TESTS=(tests/test_export.py tests/test_family_matrix.py)
if [ "${LIGHTEMBED_ST5:-}" = "1" ]; then
  # model2vec needs huggingface_hub >= 1, which transformers 4.57 refuses: its family row runs on the 6.x stack only.
  # The causal-LM rerankers' export needs transformers >= 5 (4.57 cannot trace them; the exporter refuses it by name):
  # their rows run on the 6.x stack only.
  LIGHTEMBED_MATRIX_JSON=work/family_matrix_st5.json .venv-st5/bin/python -m pytest -q -ra "${ST5_TESTS[@]}" \
      -k "not model2vec and not llm_reranker"
fi

#!/usr/bin/env bash
# Sets up .venv and runs the test suite (unit tests on tiny models + integration tests on real MiniLM weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# The type checker first ([tool.mypy] in pyproject.toml): a typing error fails the run like a failing test.
python -m mypy
python -m pytest -q -ra "$@"

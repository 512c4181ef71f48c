#!/usr/bin/env bash
# Sets up .venv and runs the test suite (unit tests on tiny models + integration tests on real MiniLM weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q -ra "$@"

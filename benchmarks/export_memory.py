"""Peak memory of lightembed-export against the model's fp32 weight size, on random BERTs of growing size.

    python -m benchmarks.export_memory [--sizes small base] [--optimize O3]

Each export runs in its own process (`python -m lightembed_export SRC -o OUT`); its peak resident set size comes
from the kernel (getrusage of the finished child). The figure to read is peak / fp32 weights: the exporter holds
the torch model (sentence-transformers' reference), the model optimum reloads and traces, and the ONNX proto
at once, so peak memory grows with that multiple of the weights plus a fixed base (Python, torch, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {  # name: (hidden, layers, heads, intermediate, vocab)
    "tiny": (128, 2, 2, 512, 8000),
    "small": (512, 6, 8, 2048, 30522),
    "base": (768, 12, 12, 3072, 30522),
}


def build(folder: Path, hidden: int, layers: int, heads: int, inner: int, vocab: int) -> int:
    """A random BERT in sentence-transformers layout (mean pooling); returns its parameter count."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = folder.parent / (folder.name + "-hf")
    hf.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(33, 127)]
    words += [f"w{i}" for i in range(vocab - len(words))]
    (hf / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(str(hf))
    config = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inner, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertModel(config).eval()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(hf))
    transformer = modules.Transformer(str(hf), max_seq_length=128)
    SentenceTransformer(modules=[transformer, modules.Pooling(hidden, "mean")], device="cpu").save(str(folder))
    return params


def measure(size: str, optimize: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="export-memory-") as tmp:
        src = Path(tmp) / "st"
        params = build(src, *SIZES[size])
        command = [sys.executable, "-m", "lightembed_export", str(src), "-o", str(Path(tmp) / "out"), "-q"]
        if optimize:
            command += ["--optimize", *optimize]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if done.returncode != 0:
            raise SystemExit(f"export failed: {done.stderr[-2000:]}")
        if peak_kib <= before:
            raise SystemExit("this child's peak was not above an earlier child's; run one size per process")
    weights = params * 4
    return {
        "size": size,
        "params": params,
        "fp32_weights_mb": round(weights / 1e6, 1),
        "peak_rss_mb": round(peak_kib * 1024 / 1e6, 1),
        "peak_over_weights": round(peak_kib * 1024 / weights, 2),
        "optimize": optimize,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="one size per process")
    parser.add_argument("--optimize", nargs="*", default=[])
    args = parser.parse_args()
    from benchmarks.system import machine

    print(json.dumps({"machine": machine(), **measure(args.size, args.optimize)}, indent=2))


if __name__ == "__main__":
    main()

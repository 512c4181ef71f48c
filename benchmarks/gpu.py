"""The CUDA benchmark: lightembed on onnxruntime's CUDA provider against sentence-transformers (torch) on one GPU.

    python -m benchmarks.gpu --source SOURCE_FOLDER --model EXPORTED_FOLDER [--corpus FILE.jsonl] [--out DIR]

SOURCE_FOLDER is the sentence-transformers folder (torch weights), EXPORTED_FOLDER what lightembed-export wrote from
it with `--optimize O4` (fp32 and O4 fp16 files, both with the fused `sentence_embedding` output). Every variant
encodes the same corpus with the same batch size, interleaved, median of the rounds; cosines are to torch fp32.
Variants that switch a lever off (NumPy pooling, no IO binding) show what each lever is worth.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class Variant:
    key: str
    name: str
    encode: Callable[[list[str], int], np.ndarray]


def st_variants(source: Path, device: str) -> list[Variant]:
    import torch
    from sentence_transformers import SentenceTransformer

    fp32 = SentenceTransformer(str(source), device=device)
    fp16 = SentenceTransformer(str(source), device=device).half()

    def run(model: Any) -> Callable[[list[str], int], np.ndarray]:
        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
            if device == "cuda":
                torch.cuda.synchronize()
            return np.asarray(out, dtype=np.float32)

        return encode

    return [
        Variant("st_fp32", "sentence-transformers torch fp32", run(fp32)),
        Variant("st_fp16", "sentence-transformers torch fp16 (.half())", run(fp16)),
    ]


def lightembed_variants(model_dir: Path, device: str) -> list[Variant]:
    import lightembed

    def make(file_name: str, pooled: bool, io_binding: bool, tf32: bool = False) -> Callable[[list[str], int], np.ndarray]:
        providers = [("CUDAExecutionProvider", {"use_tf32": 1})] if tf32 and device == "cuda" else None
        model = lightembed.SentenceTransformer(str(model_dir), device=device, file_name=file_name, providers=providers)
        if pooled and not model.has_pooled_output:
            raise SystemExit(f"{file_name} has no fused pooling output: export it with this lightembed-export")
        model.use_pooled_output = pooled
        model._graph.io_binding = io_binding

        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            return model.encode(texts, batch_size=batch_size)

        return encode

    fp32, o4 = "onnx/model.onnx", "onnx/model_O4.onnx"
    return [
        Variant("le_fp32_plain", "lightembed fp32, NumPy pooling, session.run", make(fp32, False, False)),
        Variant("le_fp32", "lightembed fp32, fused pooling, session.run (default)", make(fp32, True, False)),
        Variant("le_fp32_iobinding", "lightembed fp32, fused pooling, IO binding", make(fp32, True, True)),
        Variant("le_fp32_tf32", "lightembed fp32 with TF32 MatMuls, fused pooling", make(fp32, True, False, True)),
        Variant("le_o4_plain", "lightembed O4 fp16, NumPy pooling, session.run", make(o4, False, False)),
        Variant("le_o4", "lightembed O4 fp16, fused pooling, session.run (default)", make(o4, True, False)),
    ]


def measure(variants: list[Variant], texts: list[str], batch_size: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Median seconds per corpus pass, runners rotated each round; the embeddings of the last pass."""
    results: dict[str, dict[str, Any]] = {v.key: {"name": v.name, "seconds": []} for v in variants}
    for v in variants:  # warm-up: cuDNN/cuBLAS autotuning, arenas, first shapes
        v.encode(texts[: 4 * batch_size], batch_size)
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for v in order:
            start = time.perf_counter()
            emb = v.encode(texts, batch_size)
            results[v.key]["seconds"].append(time.perf_counter() - start)
            results[v.key]["embeddings"] = emb
    return results


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def machine() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("torch", "onnxruntime-gpu", "sentence-transformers", "transformers", "tokenizers", "numpy"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        info["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
    except OSError:
        info["gpu"] = "unknown"
    info["cpu"] = platform.processor() or platform.machine()
    return info


def table(results: dict[str, dict[str, Any]], n_texts: int, batch_size: int) -> str:
    ref = results["st_fp32"]["embeddings"]
    base = statistics.median(results["st_fp32"]["seconds"])
    half = statistics.median(results["st_fp16"]["seconds"])
    lines = [
        f"batch size {batch_size}, {n_texts} texts",
        "",
        "| variant | texts/s | x st torch fp32 | x st torch fp16 | cos to torch fp32 min / mean |",
        "|---|---|---|---|---|",
    ]
    for key, res in results.items():
        median = statistics.median(res["seconds"])
        cos = cosines(res["embeddings"], ref)
        lines.append(
            f"| {res['name']} | {n_texts / median:,.0f} | {base / median:.2f} | {half / median:.2f} "
            f"| {cos.min():.6f} / {cos.mean():.6f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="sentence-transformers folder (torch weights)")
    parser.add_argument("--model", type=Path, required=True, help="the lightembed-export output folder")
    parser.add_argument("--corpus", type=Path, help="JSON lines with a 'text' field (default: benchmarks.corpus)")
    parser.add_argument("--n", type=int, default=5000, help="texts, when no --corpus is given")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.cache/gpu"))
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of the script")
    args = parser.parse_args(argv)

    if args.corpus:
        from benchmarks.make_corpus import read_corpus

        texts = read_corpus(args.corpus)
    else:
        from benchmarks.corpus import mixed

        texts = mixed(args.n, 0)
    variants = st_variants(args.source, args.device) + lightembed_variants(args.model, args.device)
    report = {"machine": machine(), "n_texts": len(texts), "rounds": args.rounds, "runs": []}
    print(json.dumps(report["machine"]))
    sections = []
    for batch_size in args.batch_sizes:
        results = measure(variants, texts, batch_size, args.rounds)
        text = table(results, len(texts), batch_size)
        print(text + "\n", flush=True)
        sections.append(text)
        report["runs"].append(
            {
                "batch_size": batch_size,
                "variants": {
                    key: {
                        "name": res["name"],
                        "seconds": res["seconds"],
                        "cos_min": float(cosines(res["embeddings"], results["st_fp32"]["embeddings"]).min()),
                        "cos_mean": float(cosines(res["embeddings"], results["st_fp32"]["embeddings"]).mean()),
                    }
                    for key, res in results.items()
                },
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_results.json").write_text(json.dumps(report, indent=1))
    header = [
        "# lightembed on CUDA: benchmark output",
        "",
        "```",
        "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
        f"- {len(texts)} texts, {args.rounds} interleaved rounds per batch size, median; cosines to torch fp32",
        "",
    ]
    (args.out / "gpu_results.md").write_text("\n".join(header) + "\n\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

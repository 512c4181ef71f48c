"""Issue 22, int8 on onnxruntime: prototype recipes that reach onnxruntime's fused int8 kernels, against fp32, the
dynamic file (MatMulIntegerToFloat / DynamicQuantizeMatMul after onnxruntime's fusions: fast, not batch-invariant)
and per-token int8 (lightembed_export.rowwise: batch-invariant, its scale ops unfused), in ONE process.

The candidate: MatMulNBits with 8-bit weights (per-block weight scales along K, packed by onnxruntime's own
quantize_matmul_8bits) and accuracy_level=4, where onnxruntime's CPU kernel quantizes the activations to int8
itself, block by block within each row: one fused op per MatMul, and a row's quantization never looks at another
row, so it should be batch-invariant (measured here, alone vs batched: not exactly, at block 128).

    .venv/bin/python -m benchmarks.int8_kernels --model-dir work/minilm [--n 300] [--repeats 3] [--block-size 32]

Writes the prototype files into <model-dir>/onnx/ (model_q8nbits_b<block>.onnx, model_qint8_rowwise.onnx and the
dynamic file when missing) and loads them with verify=False: they are not in lightembed.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import long_paragraphs, mixed, short_queries
from benchmarks.report import write_json
from benchmarks.system import load_average, machine
from benchmarks.timing import cosines


def write_nbits(fp32: Path, out: Path, block_size: int, accuracy_level: int = 4) -> Path:
    """fp32 with every MatMul by a constant 2-D weight as MatMulNBits: 8-bit symmetric blocks of `block_size` along
    K, packed by onnxruntime's own kernel (quantize_matmul_8bits, what MatMulNBitsQuantizer calls; its Python
    wrapper needs onnx_ir, which this environment lacks)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    model = onnx.load(str(fp32))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, done = [], set()
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        array = numpy_helper.to_array(weight) if weight is not None else None
        if array is None or array.ndim != 2 or array.dtype != np.float32:
            nodes.append(node)
            continue
        rows, cols = array.shape
        blocks = -(-rows // block_size)
        padded = np.pad(array, ((0, blocks * block_size - rows), (0, 0))) if blocks * block_size > rows else array
        packed = np.zeros((cols, blocks, block_size), dtype=np.uint8)
        scales = np.zeros((cols, blocks), dtype=np.float32)
        zero_points = np.zeros((cols, blocks), dtype=np.uint8)
        quantize_matmul_8bits(packed, np.ascontiguousarray(padded), scales, zero_points, block_size, cols, rows, True)
        name = weight.name
        graph.initializer.extend([numpy_helper.from_array(packed, f"{name}_Q8"),
                                  numpy_helper.from_array(scales.reshape(-1), f"{name}_scales")])  # fmt: skip
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], f"{name}_Q8", f"{name}_scales"], list(node.output),
                                      name=f"{node.name}_Q8", domain="com.microsoft", K=rows, N=cols, bits=8,
                                      block_size=block_size, accuracy_level=accuracy_level))  # fmt: skip
        done.add(name)
    still_used = {i for n in nodes for i in n.input}
    kept = [t for t in graph.initializer if t.name not in done or t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))
    return out


def write_dynamic(fp32: Path, out: Path) -> Path:
    """onnxruntime's dynamic int8 (u8 activations, per-channel s8 weights): what `--quantize avx512_vnni` writes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32), str(out), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
    )
    return out


def write_rowwise(fp32: Path, out: Path) -> Path | None:
    try:
        from lightembed_export.rowwise import quantize_rowwise
    except ImportError:
        return None
    quantize_rowwise(fp32, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from lightembed import SentenceTransformer

    info = machine()
    onnx_dir = args.model_dir / "onnx"
    fp32 = onnx_dir / "model.onnx"
    files: dict[str, Path | None] = {"fp32": fp32}
    files["dynamic"] = onnx_dir / "model_qint8_avx512_vnni.onnx"
    if not files["dynamic"].is_file():
        write_dynamic(fp32, files["dynamic"])
    files["rowwise"] = onnx_dir / "model_qint8_rowwise.onnx"
    if not files["rowwise"].is_file():
        files["rowwise"] = write_rowwise(fp32, files["rowwise"])
    files["nbits8"] = write_nbits(fp32, onnx_dir / f"model_q8nbits_b{args.block_size}.onnx", args.block_size)
    models = {}
    for key, path in files.items():
        if path is None:
            print(f"[load] SKIP {key}: lightembed-export is not installed", flush=True)
            continue
        models[key] = SentenceTransformer(str(args.model_dir), device="cpu", backend="onnx", verify=False,
                                          file_name=path.relative_to(args.model_dir).as_posix())  # fmt: skip
    texts = mixed(args.n)
    shorts, longs = short_queries(24, seed=11), long_paragraphs(8, seed=12)
    vectors = {k: m.encode(texts, batch_size=args.batch_size) for k, m in models.items()}  # also the warm-up
    seconds: dict[str, list[float]] = {k: [] for k in models}
    order = list(models)
    for r in range(args.repeats):
        for key in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            models[key].encode(texts, batch_size=args.batch_size)
            seconds[key].append(time.perf_counter() - start)
    rows: list[dict[str, Any]] = []
    base = statistics.median(seconds["fp32"])
    for key, model in models.items():
        cos = cosines(vectors["fp32"], vectors[key])
        alone = np.stack([model.encode(t) for t in shorts])
        batched = model.encode(shorts + longs, batch_size=args.batch_size)[: len(shorts)]
        median = statistics.median(seconds[key])
        rows.append({"key": key, "file": files[key].name, "median_s": median, "x_fp32": base / median,
                     "min_cos": float(cos.min()), "mean_cos": float(cos.mean()),
                     "alone_vs_batched": float(cosines(alone, batched).min())})  # fmt: skip
    info["load_average_end"] = load_average()
    print(f"CPU {info['cpu']['model']}; load average {info['load_average_start']} -> {info['load_average_end']}; "
          f"{len(texts)} texts, batch {args.batch_size}, median of {args.repeats} interleaved rounds")  # fmt: skip
    print("| recipe | file | x lightembed fp32 | min cos to fp32 | mean cos | alone vs batched |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['key']} | {r['file']} | {r['x_fp32']:.2f} | {r['min_cos']:.5f} | {r['mean_cos']:.5f} | "
            f"{r['alone_vs_batched']:.6f} |"
        )
    write_json(args.json, {"command": " ".join([sys.executable, *sys.argv]), "machine": info, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The fp32 FLOP bound: how many FLOPs the corpus needs and how fast this CPU's FMA units could do them.

Per BERT layer and per sequence of L real tokens (hidden d, feed-forward f):
    Q, K, V, output projections   4 * 2*L*d*d
    feed-forward (two matmuls)    2 * 2*L*d*f
    attention scores Q.K^T        2*L*L*d
    attention-weighted values     2*L*L*d
Softmax, layer norms, GELU, embeddings and pooling are O(L*d) and left out (a few percent at most).
So FLOPs(L) = layers * (2*L*(4d^2 + 2df) + 4*L^2*d) = 2*L*params_in_matmuls + layers*4*L^2*d.

Peak = usable cores x FMA units per core x floats per vector x 2 FLOP per FMA x clock. The clock is /proc/cpuinfo's
"cpu MHz" (in a VM the base clock; turbo could be higher, which would lower the achieved fraction).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def model_dims(model_dir: Path) -> dict:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {
        "layers": int(cfg["num_hidden_layers"]),
        "hidden": int(cfg["hidden_size"]),
        "ffn": int(cfg["intermediate_size"]),
    }


def matmul_params(dims: dict) -> int:
    d, f = dims["hidden"], dims["ffn"]
    return dims["layers"] * (4 * d * d + 2 * d * f)


def sequence_flops(lengths: Sequence[int] | np.ndarray, dims: dict) -> float:
    """FLOPs to encode sequences of these token lengths (each on its own, no padding)."""
    L = np.asarray(lengths, dtype=np.float64)
    return float((2 * L * matmul_params(dims)).sum() + (dims["layers"] * 4 * L * L * dims["hidden"]).sum())


def padded_flops(lengths: np.ndarray, order: np.ndarray, batch_size: int, dims: dict) -> float:
    """FLOPs actually computed when sequences are batched in `order` and padded to each batch's longest."""
    ordered = np.asarray(lengths)[order]
    total = 0.0
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        total += sequence_flops(np.full(len(chunk), chunk.max()), dims)
    return total


def cpu_peak(cpu: dict, cores: int) -> dict:
    """fp32 FMA peaks (GFLOP/s) for AVX2 (8 floats) and, where the CPU has it, AVX-512 (16 floats); 2 FMA units."""
    mhz = cpu.get("mhz") or 0.0
    ghz = mhz / 1000
    peaks = {"clock_ghz": ghz, "cores": cores, "fma_units": 2}
    peaks["avx2_gflops"] = cores * 2 * 8 * 2 * ghz
    if "avx512f" in cpu.get("flags", []):
        peaks["avx512_gflops"] = cores * 2 * 16 * 2 * ghz
    return peaks


def flop_bound(lengths: np.ndarray, dims: dict, seconds: float, cpu: dict, cores: int) -> dict:
    """Useful FLOPs of the corpus, achieved GFLOP/s in `seconds`, and the fraction of each peak."""
    useful = sequence_flops(lengths, dims)
    peaks = cpu_peak(cpu, cores)
    achieved = useful / seconds / 1e9
    out = {
        "matmul_params": matmul_params(dims),
        "dims": dims,
        "real_tokens": int(np.sum(lengths)),
        "useful_gflop": useful / 1e9,
        "gflop_per_token": useful / max(int(np.sum(lengths)), 1) / 1e9,
        "achieved_gflops": achieved,
        **peaks,
        "fraction_avx2": achieved / peaks["avx2_gflops"] if peaks["avx2_gflops"] else None,
        "bound_tokens_per_s_avx2": np.sum(lengths) / (useful / (peaks["avx2_gflops"] * 1e9))
        if peaks["avx2_gflops"]
        else None,
    }
    if "avx512_gflops" in peaks:
        out["fraction_avx512"] = achieved / peaks["avx512_gflops"]
    return out

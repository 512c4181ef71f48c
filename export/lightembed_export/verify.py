"""Checks each written ONNX file, run through the lightembed runtime, against sentence-transformers on torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROBES: tuple[str, ...] = (
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "Sentence embeddings map texts to vectors so that similar meanings end up close together.",
    "Hi",
    "",
    "   ",
    "UPPER CASE, lower case and MiXeD case.",
    "Numbers 3.14159, 1,000,000 and the date 2024-01-31; code: SELECT * FROM t WHERE id = 42 <>{}[]",
    "Grüß Gott! Die Straße in München ist heute überfüllt, schöne Grüße.",
    "这是一个用于测试多语言嵌入模型的中文句子。",
    "Ça coûte 12,50 € : très cher, non ?",
    "Привет, как дела? Всё хорошо.",
    "مرحبا بالعالم",
    "Emoji 🎉🚀🤖 with 日本語 and Ελληνικά mixed in 👍🏽",
    # Longer than any max_seq_length (about 900 word pieces): exercises truncation.
    " ".join(["Sentence embeddings summarise the meaning of a whole text in one vector of numbers."] * 60),
    # Long and non-ASCII.
    "Grüße aus Köln 🎉 北京欢迎你 " * 150,
)
"""The fixed probe set every written file is checked on (short, empty, non-ASCII, past max_seq_length)."""

BATCH_SIZE = 8


@dataclass(frozen=True)
class Threshold:
    """The bar a file must clear: `metric` (min_cosine or mean_cosine) at least `value`."""

    metric: str
    value: float
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "min": self.value, "note": self.note}


FP32_THRESHOLD = Threshold("min_cosine", 0.99999, "fp32 export: must match torch")
OPTIMIZED_THRESHOLD = Threshold("min_cosine", 0.9999, "fp32 graph optimization: must match torch")
FP16_THRESHOLD = Threshold("min_cosine", 0.999, "fp16 (O4) is meant for CUDA; verified on CPU with this looser bar")
# all-MiniLM-L6-v2 measures a mean cosine of 0.99 with per-channel int8 weights and 0.93 per tensor.
INT8_THRESHOLD = Threshold(
    "mean_cosine", 0.90, "int8: metrics are informational; this floor only catches a broken file"
)


def threshold_for(kind: str, level: str | None = None) -> Threshold:
    """The threshold for a file of `kind` (fp32, optimized or quantized); `level` is the optimization level."""
    if kind == "fp32":
        return FP32_THRESHOLD
    if kind == "optimized":
        return FP16_THRESHOLD if level == "O4" else OPTIMIZED_THRESHOLD
    if kind == "quantized":
        return INT8_THRESHOLD
    raise ValueError(f"unknown file kind {kind!r}")


def reference_embeddings(model: Any, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Embeddings of `probes` from the sentence-transformers (torch) model, float32 (n, dim)."""
    emb = model.encode(list(probes), batch_size=BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def runtime_embeddings(model_dir: Path, file_name: str, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Embeddings of `probes` from the lightembed runtime loading `model_dir` with `file_name`, float32 (n, dim)."""
    from lightembed import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name)
    emb = model.encode(list(probes), batch_size=BATCH_SIZE, convert_to_numpy=True)
    return np.asarray(emb, dtype=np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Per-probe cosine (min, mean, worst probe's index) and the max absolute difference."""
    if reference.shape != candidate.shape:
        raise ValueError(f"embedding shape {candidate.shape} differs from the reference's {reference.shape}")
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    if not np.isfinite(cand).all():
        nan = float("nan")
        return {"min_cosine": nan, "mean_cosine": nan, "max_abs_diff": nan, "worst_probe": None}
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = (ref * cand).sum(axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(cand, axis=1) == 0)
    cosine = np.where(both_zero, 1.0, dots / np.maximum(norms, 1e-300))
    worst = int(np.argmin(cosine))
    return {
        "min_cosine": float(cosine[worst]),
        "mean_cosine": float(cosine.mean()),
        "max_abs_diff": float(np.abs(ref - cand).max()),
        "worst_probe": worst,
    }


def verify_file(model_dir: Path, file_name: str, reference: np.ndarray, threshold: Threshold) -> dict[str, Any]:
    """Run `file_name` through the runtime, compare with `reference`; returns metrics, passed and error."""
    try:
        metrics = compare(reference, runtime_embeddings(model_dir, file_name))
    except Exception as exc:  # the runtime rejecting a file is a verification failure, reported per file
        return {"metrics": None, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
    value = metrics[threshold.metric]
    passed = bool(np.isfinite(value) and value >= threshold.value)
    return {"metrics": metrics, "passed": passed, "error": None}


def format_table(files: Sequence[dict[str, Any]]) -> str:
    """The verification table: file | min cos | mean cos | max abs diff | size MB | check."""
    header = ("file", "min cos", "mean cos", "max abs diff", "size MB", "check")
    rows = [header]
    for entry in files:
        m = entry.get("metrics") or {}
        threshold = entry["threshold"]
        bar = f"{threshold['metric'].replace('_cosine', ' cos')} >= {threshold['min']:g}"
        check = ("ok" if entry["passed"] else "FAIL") + f" ({bar})"
        rows.append(
            (
                entry["path"],
                _fmt(m.get("min_cosine"), ".6f"),
                _fmt(m.get("mean_cosine"), ".6f"),
                _fmt(m.get("max_abs_diff"), ".2e"),
                f"{entry['size'] / 1e6:.1f}",
                check,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        " | ".join(
            cell.ljust(w) if i in (0, 5) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)

"""Checks each written ONNX file, run through the lightembed runtime, against sentence-transformers on torch.

Embedding models (feature-extraction) and SPLADE models (fill-mask) are compared by the cosine of their
(dense) embeddings of a fixed probe set; cross-encoders (text-classification) by their raw logits on probe pairs;
multi-vector encoders (ColBERT) token by token (see MultiVectorReference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightembed_export.tasks import FEATURE_EXTRACTION, FILL_MASK, MULTI_VECTOR, TEXT_CLASSIFICATION

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

_LONG = PROBES[15]
_LONG_NON_ASCII = PROBES[16]
PROBE_PAIRS: tuple[tuple[str, str], ...] = (
    ("How do I reset my password?", "Open the settings page and choose 'Forgot password' to get a reset link."),
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is eating food.", "The quick brown fox jumps over the lazy dog."),
    ("Hi", ""),
    ("", ""),
    ("   ", "Hi"),
    ("Grüß Gott! Die Straße in München ist heute überfüllt, schöne Grüße.", "Ça coûte 12,50 € : très cher, non ?"),
    ("这是一个用于测试多语言嵌入模型的中文句子。", "Привет, как дела? Всё хорошо."),
    ("Emoji 🎉🚀🤖 with 日本語 and Ελληνικά mixed in 👍🏽", "مرحبا بالعالم"),
    ("UPPER CASE, lower case and MiXeD case.", PROBES[8]),
    ("What are sentence embeddings?", _LONG),  # the document is truncated
    (_LONG, "Sentence embeddings"),  # the query is truncated
    (_LONG_NON_ASCII, _LONG),  # both past max_length: longest-first truncation
)
"""The (query, document) pairs cross-encoders are checked on: short, long, non-ASCII and empty texts."""

BATCH_SIZE = 8
SPARSE_BATCH_SIZE = 4
"""SPLADE logits are (batch, seq, vocab): smaller batches keep torch's memory in check on long probes."""


@dataclass(frozen=True)
class Threshold:
    """The bar a file must clear: `metric` at least `value` (bound "min", e.g. min_cosine) or at most `value`
    (bound "max", e.g. max_abs_diff of cross-encoder logits)."""

    metric: str
    value: float
    note: str
    bound: str = "min"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, self.bound: self.value, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        """The Threshold that as_dict() described."""
        bound = "max" if "max" in data else "min"
        return cls(data["metric"], data[bound], data["note"], bound)

    def passes(self, value: float | None) -> bool:
        """Whether a measured `value` clears the bar (NaN and None never do)."""
        if value is None or not np.isfinite(value):
            return False
        return bool(value >= self.value) if self.bound == "min" else bool(value <= self.value)


FP32_THRESHOLD = Threshold("min_cosine", 0.99999, "fp32 export: must match torch")
OPTIMIZED_THRESHOLD = Threshold("min_cosine", 0.9999, "fp32 graph optimization: must match torch")
FP16_THRESHOLD = Threshold("min_cosine", 0.999, "fp16 (O4) is meant for CUDA; verified on CPU with this looser bar")
# all-MiniLM-L6-v2 measures a mean cosine of 0.99 with per-channel int8 weights and 0.93 per tensor.
INT8_THRESHOLD = Threshold(
    "mean_cosine", 0.90, "int8: metrics are informational; this floor only catches a broken file"
)


# Cross-encoders: raw logits. all-MiniLM-L6-v2 with a seeded head measures ~1e-6 in fp32, ~1e-3 after O1-O3
# (GELU approximation), ~1e-2 in fp16; int8 is reported, with a floor on the logits' correlation.
LOGITS_FP32_THRESHOLD = Threshold("max_abs_diff", 1e-4, "fp32 export: logits must match torch", "max")
LOGITS_OPTIMIZED_THRESHOLD = Threshold(
    "max_abs_diff", 2e-2, "fp32 graph optimization (O3 approximates GELU): logits must match torch closely", "max"
)
LOGITS_FP16_THRESHOLD = Threshold(
    "max_abs_diff", 1e-1, "fp16 (O4) is meant for CUDA; verified on CPU with this looser bar", "max"
)
LOGITS_INT8_THRESHOLD = Threshold(
    "pearson", 0.9, "int8: metrics are informational; this floor on the logits' correlation only catches a broken file"
)

NEAREST_OWN_MIN = 0.9
"""Embedding (and SPLADE) files, every kind: at least this fraction of the probes' outputs must be nearer their own
reference vector than any other probe's. Cosine floors alone cannot tell a file whose output ignores its input:
on a small random model, where all texts embed alike, the average embedding scores a mean cosine of 0.93, yet
it is nearest its own reference for one probe in 17. Real files measure 1.0 (all-MiniLM-L6-v2 fp32, O3 and
int8; a tiny random BERT's int8)."""


def threshold_for(kind: str, level: str | None = None, task: str = FEATURE_EXTRACTION) -> Threshold:
    """The threshold for a file of `kind` (fp32, optimized or quantized) of a `task` model; `level` is the
    optimization level. SPLADE embeddings are held to the embedding bars (cosine of the dense vectors)."""
    if task == TEXT_CLASSIFICATION:
        return _logits_threshold_for(kind, level)
    if kind == "fp32":
        return FP32_THRESHOLD
    if kind == "optimized":
        return FP16_THRESHOLD if level == "O4" else OPTIMIZED_THRESHOLD
    if kind == "quantized":
        return INT8_THRESHOLD
    raise ValueError(f"unknown file kind {kind!r}")


def _logits_threshold_for(kind: str, level: str | None) -> Threshold:
    if kind == "fp32":
        return LOGITS_FP32_THRESHOLD
    if kind == "optimized":
        return LOGITS_FP16_THRESHOLD if level == "O4" else LOGITS_OPTIMIZED_THRESHOLD
    if kind == "quantized":
        return LOGITS_INT8_THRESHOLD
    raise ValueError(f"unknown file kind {kind!r}")


def reference_embeddings(model: Any, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Embeddings of `probes` from the sentence-transformers (torch) model, float32 (n, dim)."""
    emb = model.encode(list(probes), batch_size=BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def runtime_embeddings(model_dir: Path, file_name: str, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Embeddings of `probes` from the lightembed runtime loading `model_dir` with `file_name`, float32 (n, dim)."""
    from lightembed import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, backend="onnx")
    emb = model.encode(list(probes), batch_size=BATCH_SIZE, convert_to_numpy=True)
    return np.asarray(emb, dtype=np.float32)


def reference_logits(model: Any, pairs: Sequence[tuple[str, str]] = PROBE_PAIRS) -> np.ndarray:
    """Raw logits (no activation) of `pairs` from the sentence-transformers (torch) CrossEncoder, (n, num_labels)."""
    import torch

    logits = model.predict(
        [list(p) for p in pairs],
        batch_size=BATCH_SIZE,
        activation_fn=torch.nn.Identity(),
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(logits, dtype=np.float32).reshape(len(pairs), -1)


def runtime_logits(model_dir: Path, file_name: str, pairs: Sequence[tuple[str, str]] = PROBE_PAIRS) -> np.ndarray:
    """Raw logits of `pairs` from lightembed.CrossEncoder loading `model_dir` with `file_name`, (n, num_labels)."""
    from lightembed import CrossEncoder
    from lightembed.cross_encoder import Identity

    model = CrossEncoder(str(model_dir), device="cpu", file_name=file_name)
    logits = model.predict([list(p) for p in pairs], batch_size=BATCH_SIZE, activation_fn=Identity())
    return np.asarray(logits, dtype=np.float32).reshape(len(pairs), -1)


def reference_sparse(model: Any, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Dense SPLADE embeddings of `probes` from the sentence-transformers (torch) SparseEncoder, (n, vocab)."""
    emb = model.encode(
        list(probes), batch_size=SPARSE_BATCH_SIZE, convert_to_sparse_tensor=False, show_progress_bar=False
    )
    emb = emb.detach().cpu().numpy() if hasattr(emb, "detach") else emb
    return np.asarray(emb, dtype=np.float32)


def runtime_sparse(model_dir: Path, file_name: str, probes: Sequence[str] = PROBES) -> np.ndarray:
    """Dense SPLADE embeddings of `probes` from lightembed.SparseEncoder loading `model_dir` with `file_name`."""
    from lightembed import SparseEncoder

    model = SparseEncoder(str(model_dir), device="cpu", file_name=file_name)
    emb = model.encode(list(probes), batch_size=SPARSE_BATCH_SIZE, convert_to_sparse_tensor=False)
    return np.asarray(emb, dtype=np.float32)


MULTI_VECTOR_SIDES = ("document", "query")
"""A multi-vector encoder is checked on both encode_document and encode_query (prefixes, query expansion)."""


@dataclass
class MultiVectorReference:
    """What a multi-vector encoder gives on the probes, as documents then as queries.

    `outputs`: sentence-transformers' per-token vectors (one (tokens, dim) array per probe and side), what
    lightembed.MultiVectorEncoder's encode_document/encode_query must give. `graph`: per batch, the inputs
    sentence-transformers fed its Transformer module and the token embeddings it returned, the check of the ONNX
    graph itself where the runtime has no MultiVectorEncoder class (the rest of the pipeline is then unchecked).
    """

    outputs: list[np.ndarray]
    graph: list[tuple[dict[str, np.ndarray], np.ndarray]]

    def __len__(self) -> int:
        return len(self.outputs)


def runtime_has_multi_vector() -> bool:
    """Whether the installed lightembed runtime has the MultiVectorEncoder class."""
    import lightembed

    return hasattr(lightembed, "MultiVectorEncoder")


def multi_vector_compared() -> str:
    """What a multi-vector file is compared on, with the runtime installed here."""
    if runtime_has_multi_vector():
        return (
            "lightembed.MultiVectorEncoder encode_document(probes) and encode_query(probes), token by token, vs "
            "sentence-transformers MultiVectorEncoder"
        )
    return (
        "the graph alone: its last_hidden_state vs the token embeddings of sentence-transformers' Transformer module "
        "on the inputs it was fed in encode_document(probes) and encode_query(probes) (this lightembed has no "
        "MultiVectorEncoder class to run the whole pipeline)"
    )


def reference_multi_vector(model: Any, probes: Sequence[str] = PROBES) -> MultiVectorReference:
    """Per-token outputs of the sentence-transformers (torch) MultiVectorEncoder, and its Transformer's inputs and
    outputs, captured with a forward hook."""
    graph: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    def capture(_module: Any, args: Any, _kwargs: Any, output: Any) -> None:
        features = args[0] if args else _kwargs["features"]
        feeds = {k: v.detach().cpu().numpy().copy() for k, v in features.items() if k in _GRAPH_INPUTS}
        graph.append((feeds, output["token_embeddings"].detach().cpu().numpy().astype(np.float32)))

    handle = model[0].register_forward_hook(capture, with_kwargs=True)
    try:
        outputs: list[np.ndarray] = []
        for side in MULTI_VECTOR_SIDES:
            encode = model.encode_query if side == "query" else model.encode_document
            for vectors in encode(list(probes), batch_size=BATCH_SIZE, show_progress_bar=False):
                outputs.append(np.asarray(vectors.detach().cpu().numpy(), dtype=np.float32))
    finally:
        handle.remove()
    return MultiVectorReference(outputs, graph)


_GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def runtime_multi_vector(model_dir: Path, file_name: str, reference: MultiVectorReference) -> list[np.ndarray]:
    """The candidate's per-token vectors, in `reference.outputs`' order with lightembed.MultiVectorEncoder; without
    that class, the graph's token embeddings on each captured batch, in `reference.graph`'s order (real tokens)."""
    if runtime_has_multi_vector():
        from lightembed import MultiVectorEncoder  # type: ignore[attr-defined]

        model = MultiVectorEncoder(str(model_dir), device="cpu", file_name=file_name)
        got: list[np.ndarray] = []
        for side in MULTI_VECTOR_SIDES:
            encode = model.encode_query if side == "query" else model.encode_document
            got.extend(np.asarray(v, dtype=np.float32) for v in encode(list(PROBES), batch_size=BATCH_SIZE))
        return got
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_dir / file_name), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = []
    for feeds, _ in reference.graph:
        (hidden,) = session.run(["last_hidden_state"], {n: feeds[n].astype(np.int64) for n in names})
        got.extend(_real_tokens(np.asarray(hidden, dtype=np.float32), feeds["attention_mask"]))
    return got


def _real_tokens(hidden: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    return [rows[m.astype(bool)] for rows, m in zip(hidden, mask, strict=True)]


def multi_vector_expected(reference: MultiVectorReference) -> list[np.ndarray]:
    """The reference rows runtime_multi_vector() is compared with, for the runtime installed here."""
    if runtime_has_multi_vector():
        return reference.outputs
    rows: list[np.ndarray] = []
    for feeds, hidden in reference.graph:
        rows.extend(_real_tokens(hidden, feeds["attention_mask"]))
    return rows


def compare_multi_vector(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, Any]:
    """Token-level cosine (min, mean; worst text's index), max absolute difference, and nearest_own on each text's
    mean vector. ValueError when a text has a different number of tokens (or vectors of another width)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} outputs where the reference has {len(reference)}")
    for index, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        if ref.shape != cand.shape:
            raise ValueError(f"output {index} has shape {cand.shape}, the reference {ref.shape}")
    metrics = compare(np.concatenate(reference), np.concatenate(candidate))
    owners = np.repeat(np.arange(len(reference)), [len(r) for r in reference])
    if metrics["worst_probe"] is not None:
        metrics["worst_probe"] = int(owners[metrics["worst_probe"]])
    means = [np.stack([r.mean(0) for r in side]) for side in (reference, candidate)]
    metrics["nearest_own"] = nearest_own(means[0], means[1])
    metrics["tokens"] = len(owners)
    return metrics


def reference_outputs(model: Any, task: str = FEATURE_EXTRACTION) -> Any:
    """What the torch model gives on the probes of `task`: embeddings, logits, dense sparse embeddings or
    (multi-vector) a MultiVectorReference."""
    if task == TEXT_CLASSIFICATION:
        return reference_logits(model)
    if task == FILL_MASK:
        return reference_sparse(model)
    if task == MULTI_VECTOR:
        return reference_multi_vector(model)
    return reference_embeddings(model)


def runtime_outputs(model_dir: Path, file_name: str, task: str = FEATURE_EXTRACTION) -> np.ndarray:
    """What the lightembed runtime gives on the probes of `task` with `file_name` of `model_dir` (not for
    multi-vector, whose candidate depends on the reference: runtime_multi_vector)."""
    if task == TEXT_CLASSIFICATION:
        return runtime_logits(model_dir, file_name)
    if task == FILL_MASK:
        return runtime_sparse(model_dir, file_name)
    return runtime_embeddings(model_dir, file_name)


def probe_count(task: str = FEATURE_EXTRACTION) -> int:
    """How many probes (texts, or pairs for cross-encoders) each file of a `task` model is checked on."""
    return len(PROBE_PAIRS) if task == TEXT_CLASSIFICATION else len(PROBES)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Per-probe cosine (min, mean, worst probe's index) and the max absolute difference."""
    _check_shapes(reference, candidate)
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    if not np.isfinite(cand).all():
        nan = float("nan")
        return {"min_cosine": nan, "mean_cosine": nan, "max_abs_diff": nan, "worst_probe": None, "nearest_own": nan}
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
        "nearest_own": nearest_own(ref, cand),
    }


def nearest_own(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The fraction of candidate rows whose cosine to their own reference row is the highest among all reference
    rows (a tie, e.g. with a duplicate reference row, counts as their own)."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)

    sims = unit(candidate.astype(np.float64)) @ unit(reference.astype(np.float64)).T
    return float((np.diag(sims) >= sims.max(axis=1) - 1e-6).mean())


def compare_sparse(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """compare() of the dense vectors plus how many active (non-zero) dimensions agree.

    active_dims_identical: the fraction of probes whose active dimensions are exactly the reference's;
    min/mean_active_overlap: per probe, |both active| / |either active| (1.0 when both are empty);
    mean_active_dims: the reference's mean number of active dimensions.
    """
    metrics = compare(reference, candidate)
    ref_on, cand_on = reference > 0, candidate > 0
    union = (ref_on | cand_on).sum(axis=1)
    overlap = np.where(union == 0, 1.0, (ref_on & cand_on).sum(axis=1) / np.maximum(union, 1))
    metrics.update(
        {
            "active_dims_identical": float((ref_on == cand_on).all(axis=1).mean()),
            "min_active_overlap": float(overlap.min()),
            "mean_active_overlap": float(overlap.mean()),
            "mean_active_dims": float(ref_on.sum(axis=1).mean()),
        }
    )
    return metrics


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Cross-encoder logits (n, num_labels): max and mean absolute difference (worst pair's index), Pearson
    correlation over all logits, and the fraction of pair-of-pairs (i < j) each label orders the same way."""
    _check_shapes(reference, candidate)
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    if not np.isfinite(cand).all():
        nan = float("nan")
        return {"max_abs_diff": nan, "mean_abs_diff": nan, "pearson": nan, "order_agreement": nan, "worst_probe": None}
    diff = np.abs(ref - cand)
    flat_ref, flat_cand = ref.ravel(), cand.ravel()
    if flat_ref.std() == 0 or flat_cand.std() == 0:
        pearson = 1.0 if np.array_equal(flat_ref, flat_cand) else 0.0
    else:
        pearson = float(np.corrcoef(flat_ref, flat_cand)[0, 1])
    upper = np.triu_indices(len(ref), 1)
    agree = [
        np.sign(ref[:, k][:, None] - ref[:, k][None, :])[upper]
        == np.sign(cand[:, k][:, None] - cand[:, k][None, :])[upper]
        for k in range(ref.shape[1])
    ]
    order = float(np.concatenate(agree).mean()) if upper[0].size else 1.0
    metrics = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "pearson": pearson,
        "order_agreement": order,
        "worst_probe": int(np.argmax(diff.max(axis=1))),
    }
    if ref.shape[1] > 1:
        metrics["top_label_agreement"] = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())
    return metrics


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, task: str = FEATURE_EXTRACTION) -> dict[str, Any]:
    """The metrics of `task` (see compare, compare_logits, compare_sparse)."""
    if task == TEXT_CLASSIFICATION:
        return compare_logits(reference, candidate)
    if task == FILL_MASK:
        return compare_sparse(reference, candidate)
    return compare(reference, candidate)


def _check_shapes(reference: np.ndarray, candidate: np.ndarray) -> None:
    if reference.shape != candidate.shape:
        raise ValueError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")


def verify_file(
    model_dir: Path, file_name: str, reference: np.ndarray, threshold: Threshold, task: str = FEATURE_EXTRACTION
) -> dict[str, Any]:
    """Run `file_name` through the runtime, compare with `reference`; returns metrics, passed and error."""
    try:
        if task == MULTI_VECTOR:
            candidate = runtime_multi_vector(model_dir, file_name, reference)
            metrics = compare_multi_vector(multi_vector_expected(reference), candidate)
        else:
            metrics = compare_outputs(reference, runtime_outputs(model_dir, file_name, task), task)
    except Exception as exc:  # the runtime rejecting a file is a verification failure, reported per file
        return {"metrics": None, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
    own = metrics.get("nearest_own")
    if own is not None and np.isfinite(own) and own < NEAREST_OWN_MIN:  # NaN fails its threshold anyway
        error = (
            f"only {own:.0%} of the probes' outputs are nearest their own reference (at least {NEAREST_OWN_MIN:.0%} "
            f"needed): the output barely depends on the input, whatever its cosine (mean {metrics['mean_cosine']:.4f})"
        )
        return {"metrics": metrics, "passed": False, "error": error}
    return {"metrics": metrics, "passed": threshold.passes(metrics[threshold.metric]), "error": None}


# The metric columns of the verification table per task: (metric, header, format).
TABLE_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    FEATURE_EXTRACTION: (
        ("min_cosine", "min cos", ".6f"),
        ("mean_cosine", "mean cos", ".6f"),
        ("max_abs_diff", "max abs diff", ".2e"),
        ("nearest_own", "nearest own", ".2f"),
    ),
    MULTI_VECTOR: (
        ("min_cosine", "min token cos", ".6f"),
        ("mean_cosine", "mean token cos", ".6f"),
        ("max_abs_diff", "max abs diff", ".2e"),
        ("nearest_own", "nearest own", ".2f"),
    ),
    FILL_MASK: (
        ("min_cosine", "min cos", ".6f"),
        ("mean_cosine", "mean cos", ".6f"),
        ("max_abs_diff", "max abs diff", ".2e"),
        ("nearest_own", "nearest own", ".2f"),
        ("mean_active_overlap", "active dims same", ".4f"),
    ),
    TEXT_CLASSIFICATION: (
        ("max_abs_diff", "max abs diff", ".2e"),
        ("mean_abs_diff", "mean abs diff", ".2e"),
        ("pearson", "pearson", ".6f"),
        ("order_agreement", "order same", ".4f"),
    ),
}
_SHORT_METRIC_NAMES = {"min_cosine": "min cos", "mean_cosine": "mean cos", "max_abs_diff": "max abs diff"}


def format_table(files: Sequence[dict[str, Any]], task: str = FEATURE_EXTRACTION) -> str:
    """The verification table: file | the task's metrics (e.g. min cos, mean cos, max abs diff) | size MB | check."""
    columns = TABLE_COLUMNS[task]
    header = ("file", *(title for _, title, _ in columns), "size MB", "check")
    rows = [header]
    for entry in files:
        m = entry.get("metrics") or {}
        threshold = entry["threshold"]
        bound = "max" if "max" in threshold else "min"
        sign = "<=" if bound == "max" else ">="
        bar = f"{_SHORT_METRIC_NAMES.get(threshold['metric'], threshold['metric'])} {sign} {threshold[bound]:g}"
        check = ("ok" if entry["passed"] else "FAIL") + f" ({bar})"
        cells = tuple(_fmt(m.get(key), spec) for key, _, spec in columns)
        rows.append((entry["path"], *cells, f"{entry['size'] / 1e6:.1f}", check))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    last = len(header) - 1
    lines = [
        " | ".join(
            cell.ljust(w) if i in (0, last) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)

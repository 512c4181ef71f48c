"""Graphs saved already optimized for this CPU, so that a cold load parses and optimizes nothing.

Loading an exported file makes onnxruntime parse the whole protobuf (weights included) and run its graph
fusions, on every start. For a CPU session, `write` saves the file once more after onnxruntime's fusions, with the
weights in a separate data file that onnxruntime memory-maps instead of parsing: the *companion* of that file,
`<file>.cpu` + `<file>.cpu.data`. Opening it with optimization off cut MiniLM fp32's session creation from
0.17-0.21 s to 0.05 s on Sapphire Rapids (benchmarks/coldstart_graph.py, benchmarks/RESULTS.md "Cold start").

The companion is recorded in lightembed.json under its file's entry (`cpu_preoptimized`): hashes, the output
comparison with its file, and what it was made for: the onnxruntime version and the CPU's architecture and
instruction-set flags, since onnxruntime's fusions may depend on both (e.g. its int8 rewrites on CPUs where u8 x s8
products can overflow). `companion_for` picks it only where all three are this machine's, the provider is the CPU
and the record passed; anywhere else the file itself loads as before. The exporter writes companions
(`lightembed-export`), and `lightembed preoptimize MODEL` writes one on the machine that will serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightembed import env, machine, manifest
from lightembed.errors import LightembedValueError, kind
from lightembed.graphs.integrity import sha256_of
from lightembed.graphs.onnxruntime import create_session, save_optimized
from lightembed.graphs.protocol import position_ids
from lightembed.manifest import MANIFEST_NAME

SUFFIX = ".cpu"
RECORD = manifest.PREOPTIMIZED
ENV = "LIGHTEMBED_PREOPTIMIZED"  # 0 ignores companions (loads the exported file itself)
MIN_COSINE = 0.999999  # the companion holds the same fusions onnxruntime applies at load: it must agree


def path_of(onnx_path: Path) -> Path:
    """The companion's path for `onnx_path` (its data file is this path + ".data")."""
    return onnx_path.with_name(onnx_path.name + SUFFIX)


def enabled(preoptimized: bool | None = None) -> bool:
    """Whether companions may load: `preoptimized` when given, else False only when LIGHTEMBED_PREOPTIMIZED=0."""
    if preoptimized is not None:
        return preoptimized
    return env.flag(ENV, True) is not False


def companion_for(
    model_dir: Path, onnx_path: Path, record: dict[str, Any] | None, preoptimized: bool | None = None
) -> Path | None:
    """The companion to load instead of `onnx_path` on this machine's CPU, or None: none recorded, its check
    failed, it was made for another machine or onnxruntime, its files are absent, or companions are off
    (`preoptimized=False`, LIGHTEMBED_PREOPTIMIZED=0)."""
    if record is None or record.get("passed") is not True or not enabled(preoptimized):
        return None
    if record.get("made_for") != machine.onnxruntime_build():
        return None
    path = model_dir / str(record.get("path"))
    if path.parent != onnx_path.parent or not path.is_file():
        return None
    return path


def write(model_dir: Path, onnx_path: Path, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Save the companion of `onnx_path` (inside `model_dir`) for this machine, compare its outputs with the file's
    own on `texts` (tokenized with the folder's tokenizer), and return its manifest record. A companion that
    disagrees is deleted and recorded with passed=False and the reason."""
    target = path_of(onnx_path)
    data_name = target.name + ".data"
    for stale in (target, target.with_name(data_name)):
        stale.unlink(missing_ok=True)
    save_optimized(onnx_path, target, data_name)

    data = target.with_name(data_name)
    record: dict[str, Any] = {
        "path": target.relative_to(model_dir).as_posix(),
        "sha256": sha256_of(target),
        "size": target.stat().st_size,
        "external_data": [
            {"path": data.relative_to(model_dir).as_posix(), "sha256": sha256_of(data), "size": data.stat().st_size}
        ]
        if data.is_file()
        else [],
        "made_for": machine.onnxruntime_build(),
        "optimization_level": "extended",
    }
    reference = create_session(onnx_path, ["CPUExecutionProvider"], 1)
    feeds = _probe_feeds(model_dir, texts, reference)
    candidate = create_session(target, ["CPUExecutionProvider"], 1, optimize=False)
    metrics = compare_sessions(reference, candidate, feeds)
    passed = metrics["min_cosine"] >= MIN_COSINE
    record.update(metrics=metrics, passed=passed, error=None)
    if not passed:
        for path in (target, data):
            path.unlink(missing_ok=True)
        cosine = metrics["min_cosine"]
        record["error"] = f"outputs differ from {onnx_path.name}'s (min cosine {cosine:.7f} < {MIN_COSINE})"
    return record


_DEFAULT_TEXTS = (
    "A man is playing a guitar.",
    "Ünïcödé, emoji 🙂 and numbers 1,234.56 in one line.",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "短い日本語の文。",
    "x",
)


def _probe_feeds(model_dir: Path, texts: Sequence[str] | None, session: Any) -> list[dict[str, np.ndarray]]:
    """Two batches of graph inputs: the probe texts tokenized and padded (position_ids added where a graph takes
    them), and, for a graph that takes images (a CLIP vision tower's pixel_values), seeded random pixels of the
    shape it declares."""
    from lightembed.config import position_limit
    from lightembed.tokenize import Tokenizer

    wanted = {node.name: node for node in session.get_inputs()}
    texts = list(texts or _DEFAULT_TEXTS)
    rng = np.random.default_rng(0)
    tokenizer = None
    if "input_ids" in wanted:
        tokenizer = Tokenizer.from_dir(model_dir, min(512, position_limit(model_dir) or 512))
    feeds = []
    for chunk in (texts[: max(1, len(texts) // 2)], texts):
        feed: dict[str, np.ndarray] = {}
        if tokenizer is not None:
            batch = tokenizer(chunk)
            mask = batch.attention_mask
            feed = {
                "input_ids": batch.input_ids,
                "attention_mask": mask,
                "token_type_ids": batch.token_type_ids,
                "position_ids": position_ids(mask),
            }
        for name, node in wanted.items():
            if name not in feed and node.type == "tensor(float)":
                shape = [len(chunk) if i == 0 else dim for i, dim in enumerate(node.shape)]
                if not all(isinstance(dim, int) for dim in shape):
                    raise LightembedValueError(f"cannot make probe inputs for {name} of shape {node.shape}")
                feed[name] = rng.standard_normal(shape).astype(np.float32)
        feeds.append(feed)
    return feeds


def compare_sessions(reference: Any, candidate: Any, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Min cosine (per row of each output) and max abs diff between two sessions' outputs on `feeds`."""
    names = [node.name for node in reference.get_outputs()]
    wanted = {node.name for node in reference.get_inputs()}
    min_cos, max_abs = 1.0, 0.0
    for feed in feeds:
        feed = {k: v for k, v in feed.items() if k in wanted}
        rows = len(next(iter(feed.values())))
        for a, b in zip(reference.run(names, feed), candidate.run(names, feed)):
            a = np.asarray(a, dtype=np.float64).reshape(rows, -1)
            b = np.asarray(b, dtype=np.float64).reshape(a.shape)
            max_abs = max(max_abs, float(np.abs(a - b).max(initial=0.0)))
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cos = np.where(norms == 0, 1.0, (a * b).sum(1) / np.maximum(norms, 1e-300))
            min_cos = min(min_cos, float(cos.min(initial=1.0)))
    return {"min_cosine": min_cos, "max_abs_diff": max_abs}


def add_to_manifest(model_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """Store companion records (keyed by their file's manifest path) in `model_dir`'s lightembed.json."""
    manifest.set_file_blocks(model_dir, RECORD, records)


def candidates(model_dir: Path) -> list[str]:
    """The manifest's files that a companion is made for: passed, and run in float32 or int8 on the CPU (the fp16
    files are for CUDA)."""
    from lightembed.variants import precision_of

    found = []
    for record in _read_manifest(model_dir).files.values():
        path = model_dir / record.path
        if record.passed is True and path.is_file() and precision_of(model_dir, path) in ("float32", "int8"):
            found.append(record.path)
    return found


def write_all(
    model_dir: Path, files: Sequence[str] | None = None, say: Any = None
) -> dict[str, dict[str, Any]]:
    """Write and record the companion of each of `files` (default: `candidates`) for this machine; returns the
    records by file. Raises ValueError for a file the manifest does not list as passed."""
    model_dir = Path(model_dir)
    allowed = candidates(model_dir)
    chosen = list(files) if files else allowed
    for name in chosen:
        if name not in allowed:
            raise LightembedValueError(
                f"{name} is not a file of {model_dir}'s {MANIFEST_NAME} that passed its check and runs on the CPU "
                f"(those are: {allowed or 'none'})."
            )
    records = {}
    for name in chosen:
        try:
            record = write(model_dir, model_dir / name)
        except Exception as exc:  # noqa: BLE001 - a copy that cannot be made is recorded as failed, never loaded
            copy = path_of(model_dir / name)
            for stale in (copy, copy.with_name(copy.name + ".data")):
                stale.unlink(missing_ok=True)
            error = f"{kind(exc)}: {exc}"
            record = {"path": copy.relative_to(model_dir).as_posix(), "passed": False, "error": error, "metrics": None}
        records[name] = record
        if say is not None:
            if record["passed"]:
                say(f"{record['path']}: ok; max abs diff to {name}: {record['metrics']['max_abs_diff']:.2e}")
            else:
                say(f"{record['path']}: FAILED ({record['error']}), not kept; {name} loads as it is")
    add_to_manifest(model_dir, records)
    return records


def _read_manifest(model_dir: Path) -> manifest.Manifest:
    found = manifest.read(model_dir, strict=False)
    if found is None or not found.data:
        raise LightembedValueError(
            f"{model_dir} has no readable {MANIFEST_NAME}: companions are made for exported folders."
        )
    return found

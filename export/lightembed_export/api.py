"""export_model(): checkpoint in, verified sentence-transformers folder with ONNX files and lightembed.json out."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightembed_export import __version__
from lightembed_export import optimize as optimizing
from lightembed_export import quantize as quantizing
from lightembed_export._quiet import quiet
from lightembed_export.errors import OutputError, VerificationError
from lightembed_export.manifest import FORMAT_VERSION, MANIFEST_NAME, package_versions, probes_digest, write_manifest
from lightembed_export.onnx_export import ONNX_SUBDIR
from lightembed_export.source import read_layout, resolve_source


def export_model(
    model: str | Path,
    output_dir: str | Path,
    optimize: Iterable[str] | str = (),
    quantize: Iterable[str] | str = (),
    revision: str | None = None,
    *,
    per_channel: bool = True,
    opset: int | None = None,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    token: bool | str | None = None,
    verbose: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export `model` (Hub repo id or local sentence-transformers / transformers folder) to `output_dir`.

    Writes the sentence-transformers layout without the Transformer's torch weights, `onnx/model.onnx`,
    `onnx/model_O{n}.onnx` for each `optimize` level (O1-O4) and `onnx/model_q(u)int8_<target>.onnx` for each
    `quantize` target (avx2, avx512, avx512_vnni, arm64, or auto for this CPU). Every ONNX file is then run through
    the lightembed runtime on a fixed probe set and compared with sentence-transformers on torch; the results go
    to `output_dir/lightembed.json`, whose contents are returned.

    `per_channel` selects per-channel int8 weights (sentence-transformers' default). `overwrite` replaces a
    previous export in `output_dir`. Progress goes to `echo` (default print) unless `verbose` is False.

    Raises SourceError, OutputError or UnsupportedModelError before anything is written, and
    VerificationError (after writing everything, lightembed.json included) if a file misses its threshold.
    """
    say = (echo or print) if verbose else (lambda _msg: None)
    levels = optimizing.normalize_levels(optimize)
    targets = quantizing.resolve_targets(quantize)
    clock = _Clock()

    source = resolve_source(str(model), revision=revision, cache_dir=cache_dir, token=token)
    output = Path(output_dir).expanduser().resolve()
    _check_output(output, source.path, overwrite)
    layout = read_layout(source.path)
    where = f"{source.model_id}@{source.revision}" if source.revision else str(source.path)
    pooling_note = "" if layout.is_sentence_transformer else "; no modules.json: mean pooling"
    say(f"source: {where} ({layout.architecture}{pooling_note}){clock.lap()}")

    with quiet(), tempfile.TemporaryDirectory(prefix="lightembed-export-") as work:
        from lightembed_export import layout as st_layout
        from lightembed_export import onnx_export

        onnx_export.check_exportable(layout.model_type, layout.architecture)
        if levels:
            optimizing.check_optimizable(layout.model_type, layout.architecture)

        torch_model = st_layout.load_model(source.path)
        st_layout.check_modules(torch_model)
        modules = ", ".join(type(m).__name__ for m in torch_model)
        say(f"load: {modules} with sentence-transformers on torch, cpu, float32{clock.lap()}")
        saved = Path(work) / "model"
        st_layout.save_model(torch_model, saved)
        created = _prepare_output(output, overwrite)
        try:
            files = _write_files(
                output, saved, source.path, torch_model, levels, targets, per_channel, opset, say, clock
            )
        except BaseException:
            _discard_output(output, created)  # a half-written folder would block the next attempt
            raise

    manifest = _manifest(source, layout, torch_model, files)
    write_manifest(output, manifest)
    from lightembed_export.verify import format_table

    say(format_table(files))
    say(f"wrote {output} ({MANIFEST_NAME}) in {clock.total():.1f} s")
    failed = [f for f in files if not f["passed"]]
    if failed:
        details = "; ".join(_failure(f) for f in failed)
        raise VerificationError(
            f"verification failed for {len(failed)} file(s): {details}", [f["path"] for f in failed]
        )
    return manifest


def _write_files(
    output: Path,
    saved: Path,
    source: Path,
    torch_model: Any,
    levels: list[str],
    targets: list[quantizing.QuantTarget],
    per_channel: bool,
    opset: int | None,
    say: Callable[[str], None],
    clock: _Clock,
) -> list[dict[str, Any]]:
    """Write the layout and every ONNX file into `output`, verify them; return the per-file manifest entries."""
    from lightembed_export import layout as st_layout
    from lightembed_export import onnx_export
    from lightembed_export.verify import FP16_THRESHOLD

    copied = st_layout.copy_layout(saved, output, source)
    say(f"layout: {len(copied)} files in sentence-transformers layout, no Transformer weights{clock.lap()}")

    fp32 = onnx_export.export_transformer(saved, output / ONNX_SUBDIR, opset=opset)
    entries: list[dict[str, Any]] = [{"file": fp32, "kind": "fp32"}]
    say(f"export: {_rel(fp32, output)}{clock.lap()}")

    for level in levels:
        done = optimizing.optimize_file(fp32, level, saved)
        entries.append({"file": done.path, "kind": "optimized", "optimization": done.config})
        note = ""
        if level in optimizing.FP16_LEVELS and not done.config.get("ort_gpu_graph_pass"):
            note = (
                " (fp16 is meant for CUDA, which this onnxruntime lacks: fusions and fp16 conversion without "
                f"ONNX Runtime's GPU graph pass; checked on CPU at min cos >= {FP16_THRESHOLD.value:g})"
            )
        say(f"optimize {level}: {_rel(done.path, output)}{note}{clock.lap()}")

    for target in targets:
        done_q = quantizing.quantize_file(fp32, target.name, saved, per_channel=per_channel)
        config = dict(done_q.config, requested_as=list(target.requested_as))
        if target.reason:
            config["auto_reason"] = target.reason
        entries.append({"file": done_q.path, "kind": "quantized", "quantization": config})
        why = f" ({target.reason})" if target.reason else ""
        say(f"quantize {target.name}{why}: {_rel(done_q.path, output)}{clock.lap()}")

    files = _describe_files(entries, output)
    probes = _verify(files, output, torch_model)
    say(
        f"verify: {len(files)} file(s) on {probes} probes, "
        f"lightembed runtime vs sentence-transformers (torch){clock.lap()}"
    )
    return files


class _Clock:
    """Seconds since the start and since the previous lap."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def lap(self) -> str:
        now = time.perf_counter()
        text = f" [{now - self.last:.1f} s]"
        self.last = now
        return text

    def total(self) -> float:
        return time.perf_counter() - self.start


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_output(output: Path, source: Path, overwrite: bool) -> None:
    """OutputError if writing `output` could clobber the source or something that is not a previous export."""
    source = source.resolve()
    if output == source or output in source.parents:
        raise OutputError(f"the output folder {output} must not be (or contain) the source folder {source}")
    if output.exists():
        if not output.is_dir():
            raise OutputError(f"{output} exists and is not a folder")
        if any(output.iterdir()):
            if not overwrite:
                raise OutputError(f"{output} is not empty; choose another folder or pass --overwrite")
            if not (output / MANIFEST_NAME).is_file():
                raise OutputError(
                    f"refusing to overwrite {output}: it has no {MANIFEST_NAME}, so it is no previous export"
                )


def _prepare_output(output: Path, overwrite: bool) -> bool:
    """Empty or create `output` (after _check_output); return whether it had to be created."""
    if output.exists() and overwrite and (output / MANIFEST_NAME).is_file():
        shutil.rmtree(output)
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    return created


def _discard_output(output: Path, created: bool) -> None:
    """Remove what this export wrote: the folder if it created it, else the folder's contents."""
    if created:
        shutil.rmtree(output, ignore_errors=True)
        return
    for child in output.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _describe_files(entries: list[dict[str, Any]], output: Path) -> list[dict[str, Any]]:
    """Make each file loadable by older onnxruntime, then record its facts and the threshold it will be held to."""
    from lightembed_export.onnx_files import make_loadable, onnx_file_info
    from lightembed_export.verify import threshold_for

    files = []
    for entry in entries:
        path: Path = entry["file"]
        changes = make_loadable(path)
        info = onnx_file_info(path, output)
        if changes:
            info["rewritten_for_older_onnxruntime"] = changes
        info["kind"] = entry["kind"]
        info["optimization"] = entry.get("optimization")
        info["quantization"] = entry.get("quantization")
        level = (entry.get("optimization") or {}).get("level")
        info["threshold"] = threshold_for(entry["kind"], level).as_dict()
        files.append(info)
    return files


def _verify(files: list[dict[str, Any]], output: Path, torch_model: Any) -> int:
    """Fill in each file's metrics, passed and error (runtime vs torch model); return the number of probes."""
    from lightembed_export.verify import PROBES, Threshold, reference_embeddings, verify_file

    reference = reference_embeddings(torch_model)
    for info in files:
        threshold = Threshold(info["threshold"]["metric"], info["threshold"]["min"], info["threshold"]["note"])
        info.update(verify_file(output, info["path"], reference, threshold))
    return len(PROBES)


def _embedding_dimension(model: Any) -> int | None:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def _failure(info: dict[str, Any]) -> str:
    if info.get("error"):
        return f"{info['path']}: {info['error']}"
    metric = info["threshold"]["metric"]
    return f"{info['path']}: {metric} {info['metrics'][metric]:.6f} < {info['threshold']['min']}"


def _manifest(source: Any, layout: Any, torch_model: Any, files: list[dict[str, Any]]) -> dict[str, Any]:
    from lightembed_export.verify import BATCH_SIZE, PROBES

    transformer = torch_model[0]
    return {
        "format_version": FORMAT_VERSION,
        "source": {
            "id": source.model_id,
            "hub": source.from_hub,
            "revision": source.revision,
            "requested_revision": source.requested_revision,
        },
        "exporter": {"name": "lightembed-export", "version": __version__},
        "versions": package_versions(),
        "model": {
            "architecture": layout.architecture,
            "model_type": layout.model_type,
            "modules": [type(m).__name__ for m in torch_model],
            "embedding_dimension": _embedding_dimension(torch_model),
            "max_seq_length": torch_model.max_seq_length,
            "hidden_size": getattr(transformer.auto_model.config, "hidden_size", None),
        },
        "verification": {
            "reference": "sentence-transformers on torch (cpu, float32)",
            "candidate": "lightembed.SentenceTransformer(device='cpu', file_name=...)",
            "probes": len(PROBES),
            "probes_sha256": probes_digest(PROBES),
            "batch_size": BATCH_SIZE,
            "passed": all(f["passed"] for f in files),
        },
        "files": files,
    }

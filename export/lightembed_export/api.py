"""export_model(): checkpoint in, verified sentence-transformers folder with ONNX files and lightembed.json out."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export import optimize as optimizing
from lightembed_export import quantize as quantizing
from lightembed_export._quiet import quiet
from lightembed_export.calibration import CalibrationSet
from lightembed_export.errors import ArgumentError, OutputError, VerificationError
from lightembed_export.manifest import MANIFEST_NAME, manifest_head, probes_digest, write_manifest
from lightembed_export.onnx_export import ONNX_SUBDIR
from lightembed_export.source import read_layout, resolve_source
from lightembed_export.tasks import (
    FEATURE_EXTRACTION,
    FILL_MASK,
    MULTI_VECTOR,
    TASK_INFO,
    TEXT_CLASSIFICATION,
    check_task,
    graph_task,
    resolve_task,
)

# What verification compares, per task (lightembed.json "verification").
_COMPARED = {
    FEATURE_EXTRACTION: "encode(probes) embeddings",
    TEXT_CLASSIFICATION: "predict(probe pairs, activation_fn=Identity) raw logits",
    FILL_MASK: "encode(probes, convert_to_sparse_tensor=False) dense sparse embeddings",
}


def export_model(
    model: str | Path,
    output_dir: str | Path,
    optimize: Iterable[str] | str = (),
    quantize: Iterable[str] | str = (),
    revision: str | None = None,
    *,
    task: str | None = None,
    per_channel: bool = True,
    calibration_texts: Sequence[str] | None = None,
    calibration_file: str | Path | None = None,
    opset: int | None = None,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    token: bool | str | None = None,
    trust_remote_code: bool = False,
    external_data: bool = False,
    preoptimize: bool = True,
    tune: bool | None = None,
    verbose: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export `model` (Hub repo id or local sentence-transformers / transformers folder) to `output_dir`.

    `task` is feature-extraction (an embedding model, loaded by lightembed.SentenceTransformer),
    text-classification (a reranker, lightembed.CrossEncoder) or fill-mask (a SPLADE model, lightembed.SparseEncoder);
    None detects it from the folder (see tasks.detect_task).

    Writes the sentence-transformers layout without the Transformer's torch weights, `onnx/model.onnx`,
    `onnx/model_O{n}.onnx` for each `optimize` level (O1-O4) and `onnx/model_q(u)int8_<target>.onnx` for each
    `quantize` target: avx2, avx512, avx512_vnni, arm64 and avx2_qint8 are dynamic int8 (auto picks this CPU's);
    static is calibrated int8 with fixed activation scales (model_qint8_static.onnx), batch-invariant: a text gets
    the same vector alone or in any batch. Static calibrates on `calibration_texts`, else the non-blank lines of
    `calibration_file`, else a built-in mixed set. Every ONNX file is then run through the lightembed runtime on a
    fixed probe set and compared with sentence-transformers on torch (embeddings, raw logits or dense sparse
    embeddings); the results go to `output_dir/lightembed.json`, whose contents are returned.

    `trust_remote_code` lets transformers run the Python modeling code shipped in the checkpoint's folder (models
    such as nomic-embed-text or gte v1.5 need it); it is off by default and announced on stderr when on. The
    exported folder runs without that code.

    `external_data` writes every ONNX file's weights to a data file beside it (`model.onnx_data`), the layout
    onnx requires past 2 GB (used then whatever this says); lightembed.json records each data file's size and sha256.

    `preoptimize` also saves each passed CPU file (fp32, O1-O3, int8) once more after onnxruntime's graph
    optimization, as `<file>.cpu` with its weights in `<file>.cpu.data`: the runtime loads that copy instead on a
    machine with the same onnxruntime, CPU architecture and instruction-set flags, skipping the optimization and the
    parsing of the weights at every start (lightembed.preoptimized; `lightembed preoptimize` writes it on another
    machine).

    `tune` then times the near-lossless ways to run the embedding model's default file on this machine
    (onnxruntime fp32 and its pre-optimized copy, OpenVINO f32/bf16 with the openvino extra) on the calibration texts
    and records the fastest in lightembed.json for this machine class (lightembed.tune, as `lightembed tune` does on
    a serving machine): a machine of the same class then runs it by default. None (the default) tunes where the
    openvino extra is installed (and LIGHTEMBED_EXPORT_TUNE is not 0), the only case with more than one
    near-lossless candidate: a folder exported on an
    AMD Zen 4 then runs OpenVINO bf16 there if that measured fastest and near-lossless, whatever the CPU's flags.

    `per_channel` selects per-channel int8 weights (sentence-transformers' default). `overwrite` replaces a
    previous export in `output_dir`. Progress goes to `echo` (default print) unless `verbose` is False.

    Raises ValueError for an unknown level, target or task and for unusable `calibration_texts`; SourceError,
    OutputError, ArgumentError (an unreadable `calibration_file`) or UnsupportedModelError before anything is
    written; VerificationError (after writing everything, lightembed.json included) if a file misses its threshold.
    """
    say = (echo or print) if verbose else (lambda _msg: None)
    from lightembed_export import router

    if router.is_router_folder(model):  # a Router: each Transformer route exported as a model of its own
        options = {k: v for k, v in locals().items() if k not in ("model", "output_dir", "overwrite", "router", "say")}
        return router.export_router(model, output_dir, export_model, overwrite, **options)
    levels = optimizing.normalize_levels(optimize)
    targets = quantizing.resolve_targets(quantize)
    if task is not None:
        task = check_task(task)
    calibration = _calibration_set(calibration_texts, calibration_file)
    clock = _Clock()

    source = resolve_source(str(model), revision=revision, cache_dir=cache_dir, token=token)
    output = Path(output_dir).expanduser().resolve()
    _check_output(output, source.path, overwrite)
    layout = read_layout(source.path)
    from lightembed_export import clip

    if clip.is_clip_layout(layout):  # two towers, text and vision: its own flow
        say(f"source: {source.model_id} ({layout.architecture}; text and image embedding model){clock.lap()}")
        return clip.export_clip(
            source, layout, output, levels, targets, opset, overwrite, external_data, say, preoptimize
        )
    from lightembed_export import llm_reranker

    if llm_reranker.is_llm_reranker(layout):  # a causal LM scored by LogitScore: its own graph and pair format
        say(f"source: {source.model_id} ({layout.architecture}; causal-LM reranker, LogitScore){clock.lap()}")
        return llm_reranker.export_llm_reranker(
            source, layout, output, levels, targets, opset, overwrite, external_data, say, per_channel, preoptimize
        )
    task, task_reason = resolve_task(task, layout.facts)
    where = f"{source.model_id}@{source.revision}" if source.revision else str(source.path)
    say(f"source: {where} ({layout.architecture}; {TASK_INFO[task].what}: {task_reason}){clock.lap()}")

    with quiet(), tempfile.TemporaryDirectory(prefix="lightembed-export-") as work:
        from lightembed_export import layout as st_layout
        from lightembed_export import onnx_export

        onnx_export.check_exportable(
            layout.model_type, layout.architecture, graph_task(task), layout.transformer_dir, trust_remote_code
        )
        if levels:
            optimizing.check_optimizable(layout.model_type, layout.architecture)
        if trust_remote_code:
            _announce_remote_code(layout.transformer_dir)

        torch_model = st_layout.load_model(source.path, task, trust_remote_code)
        st_layout.check_modules(torch_model, task)
        modules = ", ".join(type(m).__name__ for m in torch_model)
        st_class = TASK_INFO[task].st_class
        say(f"load: {st_class}({modules}) with sentence-transformers on torch, cpu, float32{clock.lap()}")
        saved = Path(work) / "model"
        st_layout.save_model(torch_model, saved)
        from lightembed_export.architectures import keep_config_on_reload

        rewritten = keep_config_on_reload(saved, torch_model[0].auto_model.config, trust_remote_code)
        if rewritten:
            say(f"config: rewrote {', '.join(rewritten)} so that config.json loads back as the torch model's")
        from lightembed_export.verify import reference_outputs

        reference = reference_outputs(torch_model, task)
        m3 = _bge_m3_reference(source.path, layout, torch_model, task)
        if m3 is not None:
            say(f"bge-m3: {', '.join(m3[0].describe()['files'])} read (torch, weights only): dense, sparse and "
                f"multi-vector outputs go into the graph{clock.lap()}")  # fmt: skip
        # The weights are saved and the reference computed: free them before the exporter loads its own copy, which
        # lowers peak memory by one copy of the fp32 weights (benchmarks/export_memory.py).
        torch_model.to("meta")
        say(f"reference: sentence-transformers outputs on the probes, torch weights released{clock.lap()}")
        created = _prepare_output(output, overwrite)
        try:
            files, extra = _write_files(
                output,
                saved,
                source.path,
                torch_model,
                task,
                levels,
                targets,
                _QuantOptions(per_channel, calibration),
                opset,
                say,
                clock,
                trust_remote_code,
                external_data,
                reference,
                m3,
            )
        except BaseException:
            _discard_output(output, created)  # a half-written folder would block the next attempt
            raise

    manifest = _manifest(source, layout, torch_model, task, task_reason, files, extra)
    from lightembed_export.onnx_export import exporter_name

    manifest["exporter"]["fp32_export"] = exporter_name()
    if rewritten:
        manifest["model"]["config_rewritten"] = rewritten
    if extra.get("quantize_auto"):
        manifest["quantize_auto"] = extra["quantize_auto"]
    write_manifest(output, manifest)
    if preoptimize:
        manifest = write_preoptimized(output, say, clock)
    if tune is None:
        from lightembed import env
        from lightembed.graphs import openvino

        tune = bool(env.flag("LIGHTEMBED_EXPORT_TUNE", True)) and openvino.is_installed()
    if tune and task == FEATURE_EXTRACTION and files[0]["passed"]:
        manifest = tune_on_this_machine(output, calibration, say, clock)
    from lightembed_export.verify import format_table

    say(format_table(files, task))
    say(f"wrote {output} ({MANIFEST_NAME}) in {clock.total():.1f} s")
    auto = extra.get("quantize_auto")
    if auto and auto["kept"] is None:
        raise VerificationError(f"--quantize auto: no int8 recipe passes its check ({auto['why']})", [])
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
    task: str,
    levels: list[str],
    targets: list[quantizing.QuantTarget],
    quant: _QuantOptions,
    opset: int | None,
    say: Callable[[str], None],
    clock: _Clock,
    trust_remote_code: bool = False,
    external_data: bool = False,
    reference: Any = None,
    m3: tuple[Any, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Write the layout and every ONNX file into `output`, verify them; return the per-file manifest entries and
    the task's extra model facts (fill-mask: the tied-decoder check; BGE-M3: its heads). `m3` is a BGE-M3
    checkpoint's (heads, torch reference): the heads go into the fp32 graph (so into every file made from it)
    and each file's three outputs are checked against the reference."""
    from lightembed_export import layout as st_layout
    from lightembed_export import onnx_export
    from lightembed_export.verify import threshold_for

    copied = st_layout.copy_layout(saved, output, source)
    say(f"layout: {len(copied)} files in sentence-transformers layout, no Transformer weights{clock.lap()}")

    fp32 = onnx_export.export_transformer(
        saved, output / ONNX_SUBDIR, opset=opset, task=graph_task(task), trust_remote_code=trust_remote_code
    )
    entries: list[dict[str, Any]] = [{"file": fp32, "kind": "fp32"}]
    say(f"export: {_rel(fp32, output)} ({onnx_export.exporter_name()}, task {task}){clock.lap()}")
    extra: dict[str, Any] = {}
    if m3 is not None:
        from lightembed_export import bge_m3

        bge_m3.write_heads(fp32, m3[0], external_data)
        extra["bge_m3"] = m3[0].describe()
        say(f"bge-m3: heads appended to {_rel(fp32, output)}{clock.lap()}")
    if task == FILL_MASK:
        extra["decoder"] = _check_decoder(fp32, torch_model)
        say(f"decoder: {_describe_decoder(extra['decoder'])}{clock.lap()}")

    for level in levels:
        done = optimizing.optimize_file(fp32, level, saved)
        entries.append({"file": done.path, "kind": "optimized", "optimization": done.config})
        note = ""
        if level in optimizing.FP16_LEVELS and not done.config.get("ort_gpu_graph_pass"):
            bar = threshold_for("optimized", level, task)
            sign = "<=" if bar.bound == "max" else ">="
            note = (
                " (fp16 is meant for CUDA, which this onnxruntime lacks: fusions and fp16 conversion without "
                f"ONNX Runtime's GPU graph pass; checked on CPU at {bar.metric} {sign} {bar.value:g})"
            )
        say(f"optimize {level}: {_rel(done.path, output)}{note}{clock.lap()}")

    for target in targets:
        if target.name == quantizing.STATIC:
            done_q = quantizing.quantize_static_file(
                fp32,
                saved,
                quant.calibration,
                _max_seq_length(torch_model),
                pairs=task == TEXT_CLASSIFICATION,
                per_channel=quant.per_channel,
            )
        elif target.name == quantizing.ROWWISE:
            done_q = quantizing.quantize_rowwise_file(fp32)
        elif target.name == quantizing.WEIGHTS:
            done_q = quantizing.quantize_weights_file(fp32)
        else:
            done_q = quantizing.quantize_file(fp32, target.name, saved, per_channel=quant.per_channel)
        config = dict(done_q.config, requested_as=list(target.requested_as))
        if target.reason:
            config["auto_reason"] = target.reason
        entries.append({"file": done_q.path, "kind": "quantized", "quantization": config})
        why = f" ({target.reason})" if target.reason else ""
        say(f"quantize {target.name}{why}: {_rel(done_q.path, output)}{clock.lap()}")

    fuse = task == FEATURE_EXTRACTION and st_layout.pooling_follows_transformer(torch_model)
    files = _describe_files(entries, output, task, external_data, fuse)
    probes = _verify(files, output, torch_model, task, reference)
    from lightembed_export import auto_int8

    files, extra["quantize_auto"] = auto_int8.settle(
        files,
        output,
        fp32,
        lambda new: _describe_files(new, output, task, external_data, fuse),
        lambda new: _verify(new, output, torch_model, task, reference),
        say,
        texts=quant.calibration.texts,
        embeddings=task == FEATURE_EXTRACTION,
    )
    if m3 is not None:
        _verify_bge_m3(files, output, m3[1])
    decoder = extra.get("decoder")
    if decoder and decoder["expected_tied"] and decoder["checked"] and not decoder["tied"]:
        files[0]["passed"] = False
        files[0]["error"] = (
            "the decoder is not tied to the word embeddings as config.json says "
            f"(max |logits - h @ E.T - b| = {decoder['max_abs_diff']:.3g})"
        )
    unit = "pairs" if task == TEXT_CLASSIFICATION else "probes"
    if task == MULTI_VECTOR:
        from lightembed_export.verify import multi_vector_compared

        say(f"verify: {len(files)} file(s) on {probes} {unit}: {multi_vector_compared()}{clock.lap()}")
    else:
        say(
            f"verify: {len(files)} file(s) on {probes} {unit}, lightembed.{TASK_INFO[task].runtime_class} vs "
            f"sentence-transformers {TASK_INFO[task].st_class} (torch){clock.lap()}"
        )
    return files, extra


def write_preoptimized(output: Path, say: Callable[[str], None], clock: _Clock) -> dict[str, Any]:
    """Save the pre-optimized CPU copy of every passed CPU file in `output` (lightembed.preoptimized) and record
    them; returns the manifest as it now is."""
    from lightembed.graphs import preoptimized
    from lightembed_export.manifest import read_manifest

    if preoptimized.candidates(output):
        preoptimized.write_all(output, say=lambda line: say(f"preoptimize: {line}"))
        say(f"preoptimize: done{clock.lap()}")
    return read_manifest(output)


def tune_on_this_machine(output: Path, calibration: CalibrationSet, say: Callable[[str], None], clock: _Clock) -> dict[str, Any]:
    """Time the default file's near-lossless backends here on the calibration texts and record the winner for this
    machine class (lightembed.tune.tune); returns the manifest as it now is."""
    from lightembed.tune import tune
    from lightembed_export.manifest import read_manifest

    tune(output, texts=calibration.texts, texts_source=f"the exporter's calibration set ({calibration.source})",
         say=lambda line: say(f"tune: {line}"))  # fmt: skip
    say(f"tune: done{clock.lap()}")
    return read_manifest(output)


def _announce_remote_code(model_dir: Path) -> None:
    """Say on stderr, whatever the verbosity, that the checkpoint's own Python code is about to run."""
    import sys

    from lightembed_export.architectures import read_config, remote_code_files

    files = remote_code_files(model_dir, read_config(model_dir))
    what = ", ".join(str(model_dir / f) for f in files) if files else "none named in config.json's auto_map"
    print(
        f"lightembed-export: WARNING: trust_remote_code is on: running Python code shipped with the checkpoint "
        f"({what}) with your permissions. Export only checkpoints whose code you have read.",
        file=sys.stderr,
    )


def _check_decoder(fp32: Path, torch_model: Any) -> dict[str, Any]:
    """The tied-decoder check of a fill-mask export, with whether config.json says the decoder is tied."""
    from lightembed_export.decoder import check_tied_decoder

    config = torch_model[0].auto_model.config
    result = check_tied_decoder(fp32)
    result["expected_tied"] = bool(getattr(config, "tie_word_embeddings", True))
    return result


def _describe_decoder(decoder: dict[str, Any]) -> str:
    if not decoder["checked"]:
        return f"not checked ({decoder['reason']})"
    state = "tied to" if decoder["tied"] else "differs from"
    expected = "" if decoder["tied"] == decoder["expected_tied"] else " (config.json says otherwise)"
    return f"logits = h @ E.T + b {state} the word embeddings E{expected} (max abs diff {decoder['max_abs_diff']:.2e})"


@dataclass(frozen=True)
class _QuantOptions:
    """int8 settings shared by every quantization target."""

    per_channel: bool
    calibration: CalibrationSet


def _calibration_set(texts: Sequence[str] | None, file: str | Path | None) -> CalibrationSet:
    """The static-quantization calibration set: `texts`, else `file`'s lines, else the built-in set."""
    from lightembed_export import calibration as calibrating

    if texts is not None:
        return calibrating.from_texts(texts)
    if file is not None:
        try:
            return calibrating.from_file(file)
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
    return calibrating.default_set()


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


def _describe_files(
    entries: list[dict[str, Any]], output: Path, task: str, external_data: bool = False, fuse_pooling: bool = False
) -> list[dict[str, Any]]:
    """Give each embedding file a fused pooling output (when `fuse_pooling`: the Pooling module reads the
    Transformer's output), make it loadable by older onnxruntime, then record its facts and the threshold it will be
    held to."""
    import onnx

    from lightembed_export.onnx_files import make_model_loadable, onnx_file_info, save_model_file
    from lightembed_export.pooled import pool_into
    from lightembed_export.verify import threshold_for

    modes: tuple[str, ...] = ()
    if fuse_pooling:
        from lightembed.config import load_config

        modes = load_config(output).pooling.modes
    files = []
    for entry in entries:
        path: Path = entry["file"]
        model = onnx.load(str(path), load_external_data=False)  # once per file: its weights are inside it
        pooled = pool_into(model, modes) if modes else False
        changes = make_model_loadable(model)
        if pooled or changes or external_data:
            save_model_file(model, path, external_data)
        info = onnx_file_info(path, output, model)
        info["pooled_output"] = ",".join(modes) if pooled else None
        if changes:
            info["rewritten_for_older_onnxruntime"] = changes
        info["kind"] = entry["kind"]
        info["optimization"] = entry.get("optimization")
        info["quantization"] = entry.get("quantization")
        level = (entry.get("optimization") or {}).get("level")
        info["threshold"] = threshold_for(entry["kind"], level, task).as_dict()
        files.append(info)
    return files


def _verify(files: list[dict[str, Any]], output: Path, torch_model: Any, task: str, reference: Any = None) -> int:
    """Fill in each file's metrics, passed and error (runtime vs torch model, or its `reference` outputs computed
    beforehand); return the number of probes."""
    from lightembed_export.verify import Threshold, probe_count, reference_outputs, verify_file

    from lightembed_export import openvino_check

    if reference is None:
        reference = reference_outputs(torch_model, task)
        m3 = _bge_m3_reference(source.path, layout, torch_model, task)
        if m3 is not None:
            say(f"bge-m3: {', '.join(m3[0].describe()['files'])} read (torch, weights only): dense, sparse and "
                f"multi-vector outputs go into the graph{clock.lap()}")  # fmt: skip
    for info in files:
        info.update(verify_file(output, info["path"], reference, Threshold.from_dict(info["threshold"]), task))
        if info["passed"] and openvino_check.applies(info, task):  # what backend=None's choice relies on
            info["openvino"] = openvino_check.measure(output, info["path"], reference, info)
    return probe_count(task)


def _bge_m3_reference(source: Path, layout: Any, torch_model: Any, task: str) -> tuple[Any, Any] | None:
    """(heads, torch reference on the probes) when `source` is a BGE-M3 checkpoint exported as an embedding model
    (sparse_linear.pt and colbert_linear.pt beside its transformer), else None."""
    from lightembed_export import bge_m3

    folder = next((f for f in (source, layout.transformer_dir) if bge_m3.has_head_files(f)), None)
    if folder is None or task != FEATURE_EXTRACTION:
        return None
    from lightembed_export.verify import PROBES

    heads = bge_m3.load_heads(folder, int(torch_model[0].auto_model.config.hidden_size))
    return heads, bge_m3.reference(torch_model, heads, PROBES)


def _verify_bge_m3(files: list[dict[str, Any]], output: Path, reference: Any) -> None:
    """Check each file's dense, sparse and multi-vector outputs against the torch reference (file["bge_m3"]); a
    file that misses its threshold on any of them fails."""
    from lightembed_export import bge_m3
    from lightembed_export.verify import Threshold

    for info in files:
        result = bge_m3.compare(reference, output, info["path"], Threshold.from_dict(info["threshold"]))
        info["bge_m3"] = result["metrics"]
        if info["passed"] and not result["passed"]:
            info["passed"], info["error"] = False, result["error"]


def _embedding_dimension(model: Any) -> int | None:
    getter = getattr(model, "get_embedding_dimension", None) or getattr(model, "get_sentence_embedding_dimension", None)
    return getter() if getter is not None else None


def _failure(info: dict[str, Any]) -> str:
    if info.get("error"):
        return f"{info['path']}: {info['error']}"
    threshold = info["threshold"]
    metric = threshold["metric"]
    bound, sign = ("max", ">") if "max" in threshold else ("min", "<")
    return f"{info['path']}: {metric} {info['metrics'][metric]:.6g} {sign} {threshold[bound]}"


def _model_facts(torch_model: Any, task: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The task's own facts for lightembed.json's "model" section."""
    if task == TEXT_CLASSIFICATION:
        config = torch_model[0].auto_model.config
        activation = getattr(torch_model, "activation_fn", None)
        return {
            "num_labels": int(getattr(config, "num_labels", 1)),
            "id2label": {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()},
            "activation_fn": _dotted_name(activation) if activation is not None else None,
        }
    if task == FILL_MASK:
        pooling = next((m for m in torch_model if type(m).__name__ == "SpladePooling"), None)
        return {
            "embedding_dimension": _embedding_dimension(torch_model),
            "pooling_strategy": getattr(pooling, "pooling_strategy", None),
            "activation_function": getattr(pooling, "activation_function", None),
            "decoder": extra.get("decoder"),
        }
    facts: dict[str, Any] = {"embedding_dimension": _embedding_dimension(torch_model)}
    if extra.get("bge_m3"):
        facts["bge_m3"] = extra["bge_m3"]
    return facts


def _dotted_name(obj: Any) -> str:
    """module.Class of an object (what sentence-transformers stores for an activation function)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _max_seq_length(torch_model: Any) -> int | None:
    for name in ("max_seq_length", "max_length"):
        value = getattr(torch_model, name, None)
        if isinstance(value, int):
            return value
    return None


def _manifest(
    source: Any,
    layout: Any,
    torch_model: Any,
    task: str,
    task_reason: str,
    files: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    from lightembed_export.verify import BATCH_SIZE, PROBE_PAIRS, PROBES, SPARSE_BATCH_SIZE, multi_vector_compared

    transformer = torch_model[0]
    info = TASK_INFO[task]
    probes: tuple[Any, ...] = PROBE_PAIRS if task == TEXT_CLASSIFICATION else PROBES
    return {
        **manifest_head(source),
        "model": {
            "task": task,
            "task_reason": task_reason,
            "class": info.runtime_class,
            "architecture": layout.architecture,
            "model_type": layout.model_type,
            "modules": [type(m).__name__ for m in torch_model],
            **_model_facts(torch_model, task, extra),
            "max_seq_length": _max_seq_length(torch_model),
            "hidden_size": getattr(transformer.auto_model.config, "hidden_size", None),
        },
        "verification": {
            "reference": f"sentence-transformers {info.st_class} on torch (cpu, float32)",
            "candidate": f"lightembed.{info.runtime_class}(device='cpu', file_name=...)",
            "compared": multi_vector_compared() if task == MULTI_VECTOR else _COMPARED[task],
            "probes": len(probes),
            "probes_sha256": probes_digest(probes),
            "batch_size": SPARSE_BATCH_SIZE if task == FILL_MASK else BATCH_SIZE,
            "passed": all(f["passed"] for f in files),
        },
        "files": files,
    }

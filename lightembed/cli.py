"""The `lightembed` command: encode texts, describe, verify, pre-optimize or tune a model, or forward to the
exporter, the server and embed-file."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import Any, Sequence

_EXPORT_MISSING = (
    "`lightembed export` needs the exporter, which brings torch, transformers and optimum:\n"
    "    pip install lightembed-export      # or, from a lightembed checkout: pip install ./export\n"
    "then run `lightembed export MODEL -o OUT` (or `lightembed-export MODEL -o OUT`)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightembed", description="Sentence embeddings on ONNX Runtime.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="local model folder or Hugging Face Hub repo id")
        p.add_argument("--file-name", help="ONNX file inside the model, e.g. onnx/model_O3.onnx")
        p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")
        p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
        p.add_argument("--threads", type=int, help="intra-op threads (default: usable cores)")

    enc = sub.add_parser("encode", help="embed texts and print JSON or write .npy")
    model_args(enc)
    enc.add_argument("texts", nargs="*", help="texts to embed; none or '-' reads one text per line from stdin")
    enc.add_argument("--batch-size", type=int, default=32)
    enc.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    enc.add_argument("--prompt-name", help="a prompt name from the model's config")
    enc.add_argument("--precision", default="float32", help="float32, int8, uint8, binary or ubinary")
    enc.add_argument("--format", choices=("json", "npy"), default="json")
    enc.add_argument("-o", "--output", help="write here instead of stdout (required for npy on a terminal)")

    info = sub.add_parser("info", help="print what was loaded: files, pooling, max length, dimension, providers")
    model_args(info)

    ver = sub.add_parser("verify", help="check ONNX files against the sha256 and results in lightembed.json")
    ver.add_argument("model", help="local model folder or Hugging Face Hub repo id")
    ver.add_argument("--file-name", help="check only this ONNX file (default: every .onnx file)")
    ver.add_argument("--revision", help="Hub revision (branch, tag or commit)")

    pre = sub.add_parser(
        "preoptimize",
        help="save the model's CPU files already optimized for this machine and onnxruntime (faster cold start)",
    )
    pre.add_argument("model", help="local exported model folder (one with lightembed.json)")
    pre.add_argument("--file-name", action="append", help="only this ONNX file (repeatable; default: every CPU file)")

    tun = sub.add_parser(
        "tune",
        help="time the near-lossless backends on this machine and record the fastest in lightembed.json",
        description="Time onnxruntime fp32 (its pre-optimized copy), OpenVINO f32 and bf16 (with the openvino extra) "
        "and, with --int8, the folder's int8 files; each must keep min cos >= 0.9999 to onnxruntime fp32 on the "
        "calibration texts (int8: >= 0.97, mean >= 0.99). Rounds are interleaved, medians compared, and fp32 is "
        "left only for a candidate faster by more than --margin. The result is recorded per machine class; "
        "backend=None on a machine of this class then runs the winner.",
    )
    tun.add_argument("model", help="local exported model folder (one with lightembed.json)")
    tun.add_argument("--file", action="append", help="ONNX file to tune (repeatable; default: the one the folder loads)")
    tun.add_argument("--int8", action="store_true", help="also time the folder's int8 files (they change vectors)")
    tun.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5; medians compared)")
    tun.add_argument("--texts", type=int, default=256, help="texts per timed run (default 256)")
    tun.add_argument("--texts-file", help="calibration texts, one per line (default: a built-in mixed set)")
    tun.add_argument("--batch-size", type=int, default=32)
    tun.add_argument("--margin", type=float, default=0.1, help="how much faster than fp32 a candidate must be (0.1)")
    tun.add_argument("--threads", type=int, help="intra-op threads (default: usable cores)")
    tun.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")

    sub.add_parser("export", help="export a checkpoint to ONNX (needs lightembed-export)", add_help=False)
    sub.add_parser("serve", help="serve models over HTTP (needs lightembed[server]); see `lightembed serve -h`", add_help=False)
    sub.add_parser(
        "embed-file", help="embed a JSONL/CSV/Parquet column into Parquet or .npy, resumably (needs lightembed[files])",
        add_help=False,
    )
    return parser


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns lightembed.SentenceTransformer
    from lightembed.encoder import SentenceTransformer

    return SentenceTransformer(
        args.model, device=args.device, file_name=args.file_name, revision=args.revision, threads=args.threads
    )


class CliError(Exception):
    """A failure the CLI reports as one line on stderr with exit status 2."""


def _open_output(path: str, binary: bool) -> Any:
    """Open `path` for writing before any work is done, so a bad destination fails at once; exactly that path
    is written (np.save given a name would add .npy)."""
    if os.path.isdir(path):
        raise CliError(f"-o {path}: is a directory; give a file path.")
    try:
        return open(path, "wb" if binary else "w", encoding=None if binary else "utf-8")
    except OSError as exc:
        raise CliError(f"-o {path}: cannot write there: {exc.strerror or exc}.") from None


def _stdin_texts() -> list[str]:
    """One text per stdin line. Lines that are not valid UTF-8 are an error naming the line: the runtime rejects
    text it cannot represent rather than guessing (see README, "Bad input")."""
    texts = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(
                f"stdin line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start}); "
                "convert the file to UTF-8 first (e.g. iconv -f latin1 -t utf-8)."
            ) from None
        texts.append(line.rstrip("\r\n"))
    return texts


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    binary = args.format == "npy"
    if binary and not args.output and sys.stdout.isatty():
        raise CliError("refusing to write binary .npy to a terminal: pass -o FILE")
    texts = args.texts
    if not texts or texts == ["-"]:
        texts = _stdin_texts()
    out = _open_output(args.output, binary) if args.output else None
    try:
        model = _load(args)
        emb = model.encode(
            texts,
            batch_size=args.batch_size,
            normalize_embeddings=args.normalize,
            prompt_name=args.prompt_name,
            precision=args.precision,
        )
        if binary:
            # Through Python's write(), not numpy's fwrite, so a reader that left shows as BrokenPipeError.
            buffer = io.BytesIO()
            np.save(buffer, emb)
            (out or sys.stdout.buffer).write(buffer.getbuffer())
        else:
            text = json.dumps(emb.tolist()) + "\n"
            (out or sys.stdout).write(text)
    finally:
        if out is not None:
            out.close()
    sys.stdout.flush()  # a closed pipe shows here, inside main's handler, not at interpreter exit
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lightembed import manifest as manifests
    from lightembed.graphs.integrity import check_file
    from lightembed.hub import resolve

    folder, _ = resolve(args.model, revision=args.revision, file_name=args.file_name)
    manifest = manifests.read(folder)
    files = [args.file_name] if args.file_name else sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.onnx"))
    checked = 0
    for name in files:
        path = Path(folder) / name if (Path(folder) / name).is_file() else Path(folder) / "onnx" / name
        record = manifest.record(path) if manifest is not None else None
        entry = check_file(Path(folder), path, record, hash_external_data=True)  # IntegrityError on a mismatch
        status = "not listed in lightembed.json (not checked)" if entry is None else "ok (sha256 and check match)"
        checked += entry is not None
        print(f"{path.relative_to(folder).as_posix()}: {status}")
        companion = folder / str(entry.preoptimized.get("path")) if entry and entry.preoptimized else None
        if companion is not None and companion.is_file():
            check_file(Path(folder), path, record, companion=companion)
            print(f"{companion.relative_to(folder).as_posix()}: ok (pre-optimized copy; sha256 of it and its data match)")
    if not checked:
        raise CliError(f"{folder} has no lightembed.json entry for {files}: nothing could be verified.")
    return 0


def _preoptimize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lightembed.graphs import preoptimized

    folder = Path(args.model)
    if not folder.is_dir():
        raise CliError(f"{folder} is not a local model folder (preoptimize writes into the folder).")
    records = preoptimized.write_all(folder, args.file_name, say=print)
    if not records:
        raise CliError(f"{folder} has no file that passed its check and runs on the CPU: nothing was written.")
    return 0 if all(r["passed"] for r in records.values()) else 1


def _tune(args: argparse.Namespace) -> int:
    from lightembed.tune import tune

    texts, source = None, None
    if args.texts_file:
        try:
            with open(args.texts_file, encoding="utf-8") as handle:
                texts = [line.rstrip("\r\n") for line in handle if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--texts-file {args.texts_file}: cannot read it as UTF-8 text: {exc}") from None
        if not texts:
            raise CliError(f"--texts-file {args.texts_file} has no non-blank lines.")
        source = os.path.basename(args.texts_file)
    tune(
        args.model, args.file, int8=args.int8, rounds=args.rounds, timed_texts=args.texts, texts=texts,
        texts_source=source, batch_size=args.batch_size, margin=args.margin, threads=args.threads,
        write=not args.dry_run, say=print,
    )  # fmt: skip
    if not args.dry_run:
        print("recorded in lightembed.json for this machine class")
    return 0


def describe(model) -> dict:  # noqa: ANN001 - lightembed.SentenceTransformer
    """What a loaded model is made of, as plain JSON-able data."""
    folder = model.model_dir
    runtime = model.runtime_info
    return {
        "model_dir": runtime.model_dir,
        "onnx_file": runtime.onnx_file,
        "onnx_files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.onnx")),
        "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
        "modules": model.config.module_types,
        "pooling": list(model.config.pooling.modes),
        "pooled_output": runtime.pooled_output,
        "include_prompt": model.config.pooling.include_prompt,
        "normalize": model.config.has_normalize,
        "max_seq_length": model.max_seq_length,
        "do_lower_case": model.config.do_lower_case,
        "dimension": model.get_sentence_embedding_dimension(),
        "similarity_fn_name": model.similarity_fn_name,
        "prompts": model.prompts,
        "default_prompt_name": model.default_prompt_name,
        "graph_inputs": runtime.graph_inputs,
        "providers": runtime.providers,
        "intra_op_threads": runtime.intra_op_threads,
        "verified": runtime.verified,
        "preoptimized_file": runtime.preoptimized_file,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lightembed` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from lightembed.server.run import main as serve_main  # argparse only; Starlette/uvicorn load after the flags

        return serve_main(argv[1:])
    if argv and argv[0] == "embed-file":
        from lightembed.embed_file import main as embed_file_main  # pyarrow loads only when the job starts

        return embed_file_main(argv[1:])
    if argv and argv[0] == "export":
        try:
            from lightembed_export.cli import main as export_main
        except ImportError:
            print(_EXPORT_MISSING, file=sys.stderr)
            return 2
        return int(export_main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        if args.command == "encode":
            return _encode(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "preoptimize":
            return _preoptimize(args)
        if args.command == "tune":
            return _tune(args)
        print(json.dumps(describe(_load(args)), indent=2))
        sys.stdout.flush()
        return 0
    except (CliError, TypeError, ValueError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. `lightembed info MODEL | head`: the reader left, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"lightembed: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

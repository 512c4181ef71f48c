"""The `lightembed` command: encode texts, describe a model, or forward to the exporter."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

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


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    texts = args.texts
    if not texts or texts == ["-"]:
        texts = [line.rstrip("\n") for line in sys.stdin]
    model = _load(args)
    emb = model.encode(
        texts,
        batch_size=args.batch_size,
        normalize_embeddings=args.normalize,
        prompt_name=args.prompt_name,
        precision=args.precision,
    )
    if args.format == "npy":
        if args.output:
            np.save(args.output, emb)
        elif sys.stdout.isatty():
            raise ValueError("refusing to write binary .npy to a terminal: pass -o FILE")
        else:
            np.save(sys.stdout.buffer, emb)
        return 0
    text = json.dumps(emb.tolist())
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
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
        print(json.dumps(describe(_load(args)), indent=2))
        return 0
    except (TypeError, ValueError, FileNotFoundError) as exc:
        print(f"lightembed: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `lightembed info MODEL | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

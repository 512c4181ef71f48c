"""The lightembed-export command (also reached as `lightembed export`)."""

from __future__ import annotations

import argparse
import sys

from lightembed_export import __version__
from lightembed_export.errors import ExportError
from lightembed_export.optimize import LEVELS
from lightembed_export.quantize import AUTO, TARGETS
from lightembed_export.tasks import TASKS

EPILOG = """\
examples:
  lightembed-export sentence-transformers/all-MiniLM-L6-v2 -o minilm-onnx --optimize O3 --quantize static
  lightembed-export sentence-transformers/all-MiniLM-L6-v2 -o minilm-onnx --quantize static auto
  lightembed-export ./my-st-model -o out --optimize O1 O2 O3 O4 --quantize avx2 avx512 avx512_vnni arm64
  lightembed-export cross-encoder/ms-marco-MiniLM-L6-v2 -o reranker-onnx     (a CrossEncoder: detected)
  lightembed-export naver/splade-v3 -o splade-onnx --task fill-mask         (a SparseEncoder / SPLADE model)

exit status: 0 exported and verified; 1 a file failed verification (see the table and lightembed.json)
or the export failed; 2 bad arguments, a source that is no model, an unsupported architecture, or an
output folder that is in the way.
"""


def build_parser(prog: str = "lightembed-export") -> argparse.ArgumentParser:
    """The argument parser of the command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Export a sentence-transformers model (SentenceTransformer, CrossEncoder or SparseEncoder; Hub id or\n"
            "local folder; a plain transformers folder gets mean pooling, or is a reranker / SPLADE model by its\n"
            "architecture) to ONNX in sentence-transformers layout, optionally graph-optimized (O1-O4) and\n"
            "int8-quantized, and verify every file, run by the lightembed runtime, against the torch model."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="Hugging Face Hub repo id or local model folder")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder (created; must be empty or a previous export with --overwrite)",
    )
    parser.add_argument(
        "--optimize",
        nargs="+",
        default=[],
        metavar="LEVEL",
        type=str.upper,
        choices=LEVELS,
        help="ONNX Runtime optimization levels to write as onnx/model_<LEVEL>.onnx: "
        "O1-O3 (fp32), O4 (fp16, meant for CUDA)",
    )
    parser.add_argument(
        "--quantize",
        nargs="+",
        default=[],
        metavar="TARGET",
        type=str.lower,
        choices=TARGETS + (AUTO,),
        help="int8 quantization: static (recommended: calibrated, fixed activation scales, so a text gets the "
        "same vector alone or in any batch; onnx/model_qint8_static.onnx), or dynamic for a CPU target: avx2 (u8 x u8), "
        "avx2_qint8 (u8 x s8, model_qint8_avx2.onnx), avx512, avx512_vnni, arm64, or auto (this CPU's); rowwise: "
        "a scale per token (batch-invariant, every MatMul int8, closer to fp32; onnx/model_qint8_rowwise.onnx); files are "
        "named by sentence-transformers' rule model_{weights dtype}_{config}.onnx",
    )
    parser.add_argument(
        "--calibration-file",
        metavar="PATH",
        help="texts to calibrate --quantize static on, one per line (UTF-8; default: a built-in mixed set of "
        "short and long texts in several languages)",
    )
    parser.add_argument(
        "--task",
        type=str.lower,
        choices=TASKS,
        help="what the model is (default: detected from the folder): feature-extraction (embeddings, "
        "lightembed.SentenceTransformer), text-classification (a CrossEncoder reranker, logits (batch, num_labels)), "
        "fill-mask (a SparseEncoder / SPLADE model, logits (batch, seq, vocab)), multi-vector (a ColBERT-style "
        "MultiVectorEncoder, sentence-transformers >= 6: every token's hidden state)",
    )
    parser.add_argument("--revision", help="Hub branch, tag or commit (Hub ids only)")
    parser.add_argument(
        "--no-per-channel",
        dest="per_channel",
        action="store_false",
        help="quantize weights per tensor instead of per channel (smaller error with per channel; the default)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run the Python modeling code shipped in the checkpoint (needed by e.g. "
        "nomic-embed-text, gte v1.5, jina v3; read that code first). The exported folder never needs it",
    )
    parser.add_argument(
        "--external-data",
        action="store_true",
        help="store each ONNX file's weights in a data file beside it (model.onnx_data), as files over 2 GB "
        "always are",
    )
    parser.add_argument(
        "--no-preoptimize",
        dest="preoptimize",
        action="store_false",
        help="do not save the CPU files again already optimized for this machine (<file>.cpu + .cpu.data, which "
        "the runtime loads faster on a machine with the same onnxruntime and CPU flags)",
    )
    tuning = parser.add_mutually_exclusive_group()
    tuning.add_argument(
        "--tune",
        action="store_true",
        default=None,
        help="time onnxruntime fp32 and OpenVINO f32/bf16 (with lightembed[openvino]) on this machine and record the "
        "fastest near-lossless one in lightembed.json for this machine class (as `lightembed tune` does); the "
        "default where the openvino extra is installed",
    )
    tuning.add_argument("--no-tune", dest="tune", action="store_false", help="do not time the backends on this machine")
    parser.add_argument(
        "--opset",
        type=int,
        help="ONNX opset for the export (default: optimum's for the architecture; 17 with torch.onnx.export)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in the output folder")
    parser.add_argument("--cache-dir", help="Hugging Face cache folder for Hub downloads")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return int(exc.code or 0)
    from lightembed_export.api import export_model

    try:
        export_model(
            args.model,
            args.output,
            optimize=args.optimize,
            quantize=args.quantize,
            revision=args.revision,
            task=args.task,
            per_channel=args.per_channel,
            calibration_file=args.calibration_file,
            opset=args.opset,
            overwrite=args.overwrite,
            cache_dir=args.cache_dir,
            trust_remote_code=args.trust_remote_code,
            external_data=args.external_data,
            preoptimize=args.preoptimize,
            tune=args.tune,
            verbose=not args.quiet,
        )
    except ExportError as exc:
        print(f"lightembed-export: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lightembed-export: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

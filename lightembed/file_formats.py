"""Which table format an input file of embed-file (and the Ray job) is, from its name."""

from __future__ import annotations

from pathlib import Path

from lightembed.errors import LightembedValueError

INPUT_FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def input_format(path: Path) -> str:
    """"json", "csv" or "parquet" from the file name (a .gz/.bz2 suffix after JSONL or CSV is decompressed)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".lz4"):
        suffixes = suffixes[:-1]
    fmt = INPUT_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise LightembedValueError(f"{path}: unknown input format; use .jsonl, .csv or .parquet (JSON/CSV may be compressed).")
    return fmt

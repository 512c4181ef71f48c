"""File hashes: what the manifest records and the integrity checks compare."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 22


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (hashlib releases the GIL while it hashes them)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

"""`lightembed.util.tensor`: sentence-transformers 6's `util.tensor` module, array helpers (normalize_embeddings, truncate_embeddings, ...), so that code
importing from sentence-transformers' `util.tensor` keeps working with lightembed in its place. The functions live
in lightembed.util; a name lightembed does not provide raises lightembed.util's refusal, naming why."""

from __future__ import annotations

from typing import Any

from lightembed.util import (  # noqa: F401 - re-exported
    normalize_embeddings,
)

__all__ = ['normalize_embeddings']


def __getattr__(name: str) -> Any:
    import lightembed.util

    return getattr(lightembed.util, name)

"""Optional progress bars: tqdm is imported only when a bar is asked for (the `progress` extra)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable[Any], enabled: bool, desc: str, total: int | None = None) -> Any:
    """Wrap in a tqdm bar (of `total` steps) when enabled and tqdm is installed (the `progress` extra)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn(
            "show_progress_bar=True needs tqdm: pip install 'lightembed[progress]'. Continuing without a bar.",
            stacklevel=3,
        )
        return iterable
    return tqdm(iterable, desc=desc, total=total)

"""Pooling of token embeddings into one vector per input, as sentence-transformers' Pooling module does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lightembed.errors import LightembedValueError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# The exporter can fuse these modes into the graph as an extra output, recording the modes under the metadata key;
# the runtime uses that output only when the recorded modes equal the model's Pooling config.
FUSABLE_MODES = frozenset({"cls", "max", "mean", "mean_sqrt_len_tokens"})
POOLED_OUTPUT = "sentence_embedding"
POOLED_METADATA_KEY = "lightembed.pooling"

# Order of the legacy boolean keys, which is also the order their outputs are concatenated in.
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class PoolingConfig:
    """Which pooling modes to apply (concatenated in this order) and whether prompt tokens count."""

    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    embedding_dimension: int | None = None
    weights_from_first_token: bool = False
    """weightedmean's position weights start at 1 on each row's first real token (sentence-transformers 6), not on
    column 0 (5.x); the two differ only with left padding. load_config sets it from the version that saved the
    folder."""

    @classmethod
    def from_dict(cls, config: dict) -> "PoolingConfig":
        """Read either config format: `pooling_mode` (str or list) or the legacy `pooling_mode_*` booleans."""
        mode = config.get("pooling_mode")
        if mode is None:
            modes = tuple(name for key, name in _LEGACY_KEYS.items() if config.get(key, False)) or ("mean",)
        elif isinstance(mode, str):
            modes = (mode,)
        elif isinstance(mode, (list, tuple)) and mode:
            modes = tuple(mode)
        else:
            raise LightembedValueError(f"Invalid pooling_mode {mode!r} in the Pooling config.")
        for name in modes:
            if name not in POOLING_MODES:
                raise LightembedValueError(f"Unknown pooling mode {name!r}; valid modes are {POOLING_MODES}.")
        dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        return cls(modes=modes, include_prompt=bool(config.get("include_prompt", True)), embedding_dimension=dim)


def exclude_prompt(attention_mask: np.ndarray, prompt_length: int) -> np.ndarray:
    """A copy of the mask with the prompt (and, with left padding, the padding before it) zeroed."""
    mask = attention_mask.copy()
    first_real = mask.argmax(axis=1)
    if not first_real.any():
        mask[:, :prompt_length] = 0
    else:
        positions = np.arange(mask.shape[1])[None, :]
        mask[positions < (first_real + prompt_length)[:, None]] = 0
    return mask


def first_real_tokens(attention_mask: np.ndarray) -> np.ndarray:
    """Per row, the column of the first real token (0 for a row with none), as sentence-transformers 6 finds it."""
    return attention_mask.argmax(axis=1)


def pool(
    token_embeddings: np.ndarray,
    attention_mask: np.ndarray,
    modes: tuple[str, ...],
    weight_offsets: np.ndarray | None = None,
) -> np.ndarray:
    """Pool (batch, seq, hidden) token embeddings into (batch, hidden * len(modes)), float32.

    `weight_offsets` (one per row) are subtracted from weightedmean's column positions: each row's first real
    token in the mask before any prompt was excluded, as sentence-transformers 6 weights (see `first_real_tokens`).
    """
    x = token_embeddings
    mask = attention_mask.astype(x.dtype, copy=False)
    outputs: list[np.ndarray] = []
    mean_sum: np.ndarray | None = None
    counts: Any = None  # set with mean_sum
    for mode in modes:
        if mode == "cls":
            first = attention_mask.argmax(axis=1)
            outputs.append(x[np.arange(x.shape[0]), first])
        elif mode == "max":
            masked = np.where(mask[:, :, None] > 0, x, np.array(-np.inf, dtype=x.dtype))
            outputs.append(masked.max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            if mean_sum is None:
                mean_sum = np.matmul(mask[:, None, :], x)[:, 0, :]
                counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
            outputs.append(mean_sum / (counts if mode == "mean" else np.sqrt(counts)))
        elif mode == "weightedmean":
            positions = np.arange(1, x.shape[1] + 1, dtype=x.dtype)[None, :]
            if weight_offsets is not None:
                positions = positions - weight_offsets.astype(x.dtype)[:, None]
            weights = mask * positions
            total = np.matmul(weights[:, None, :], x)[:, 0, :]
            outputs.append(total / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9))
        elif mode == "lasttoken":
            seq_len = x.shape[1]
            flipped = attention_mask[:, ::-1]
            values = flipped.max(axis=1)
            from_end = np.where(values == 0, seq_len - 1, flipped.argmax(axis=1))
            last = seq_len - from_end - 1
            rows = np.arange(x.shape[0])
            outputs.append(x[rows, last] * mask[rows, last][:, None])
        else:
            raise LightembedValueError(f"Unknown pooling mode {mode!r}; valid modes are {POOLING_MODES}.")
    out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
    return out.astype(np.float32, copy=False)

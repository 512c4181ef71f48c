"""Tokenization: a tokenizer.json with the model's truncation and our own per-batch padding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

TextInput = Union[str, tuple[str, str]]


@dataclass
class Batch:
    """One padded batch: the arrays a graph may take, plus the unpadded lengths."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _token_str(value: object) -> str | None:
    if isinstance(value, dict):  # AddedToken serialised as a dict
        value = value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    """Wraps a `tokenizers.Tokenizer`: truncates to `max_length`, pads each batch to its longest input.

    Any padding or truncation fixed inside tokenizer.json is replaced, so a file that pads every input to
    128 tokens does not make every batch 128 tokens long.
    """

    def __init__(
        self,
        tokenizer: HFTokenizer,
        max_length: int | None,
        *,
        pad_id: int = 0,
        padding_side: str = "right",
        do_lower_case: bool = False,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.do_lower_case = do_lower_case
        self.max_length = max_length

    @classmethod
    def from_dir(cls, folder: str | Path, max_length: int | None = None, do_lower_case: bool = False) -> "Tokenizer":
        """Load tokenizer.json (and tokenizer_config.json for pad token and padding side) from `folder`."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"No tokenizer.json in {folder}. lightembed needs a fast tokenizer file; "
                "export the model with lightembed-export, which writes one."
            )
        tokenizer = HFTokenizer.from_file(str(path))
        config = _read_json(folder / "tokenizer_config.json")
        pad_id = None
        if tokenizer.padding is not None:
            pad_id = tokenizer.padding.get("pad_id")
        pad_token = _token_str(config.get("pad_token")) or _token_str(
            _read_json(folder / "special_tokens_map.json").get("pad_token")
        )
        if pad_token is not None and tokenizer.token_to_id(pad_token) is not None:
            pad_id = tokenizer.token_to_id(pad_token)
        return cls(
            tokenizer,
            max_length,
            pad_id=pad_id if pad_id is not None else 0,
            padding_side=config.get("padding_side", "right"),
            do_lower_case=do_lower_case,
        )

    @property
    def max_length(self) -> int | None:
        return self._max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        if value is None:
            self._tokenizer.no_truncation()
        else:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"max_seq_length must be a positive integer, got {value!r}.")
            self._tokenizer.enable_truncation(max_length=value, strategy="longest_first")
        self._max_length = value

    @property
    def backend(self) -> HFTokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tokenizer

    def encode(self, texts: Sequence[TextInput]) -> list[Encoding]:
        """Tokenize texts (or text pairs), truncated and unpadded."""
        if self.do_lower_case:
            texts = [t.lower() if isinstance(t, str) else tuple(s.lower() for s in t) for t in texts]
        return self._tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def pad(self, encodings: Sequence[Encoding]) -> Batch:
        """Stack encodings into int64 arrays padded to the longest one."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        width = int(lengths.max()) if len(encodings) else 0
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        left = self.padding_side == "left"
        for row, (enc, n) in enumerate(zip(encodings, lengths)):
            span = slice(width - n, width) if left else slice(0, n)
            ids[row, span] = enc.ids
            mask[row, span] = 1
            types[row, span] = enc.type_ids
        return Batch(ids, mask, types, lengths)

    def batches(
        self, texts: Sequence[TextInput], batch_size: int, max_tokens: int | None = None
    ) -> Iterator[tuple[np.ndarray, Batch]]:
        """Yield (original indices, padded batch), longest inputs first, so each batch pads little.

        A batch holds at most `batch_size` inputs and, when `max_tokens` is set, at most that many padded
        tokens (rows x longest), which bounds the memory a batch of long documents takes.
        """
        encodings = self.encode(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            rows = batch_size
            if max_tokens is not None:
                rows = max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
            idx = order[start : start + rows]
            yield idx, self.pad([encodings[i] for i in idx])
            start += rows

    def __call__(self, texts: Sequence[TextInput]) -> Batch:
        return self.pad(self.encode(texts))

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt takes at the start of an input, not counting a trailing special token."""
        enc = self.encode([prompt])[0]
        n = len(enc.ids)
        if n and enc.special_tokens_mask[-1]:
            n -= 1
        return n

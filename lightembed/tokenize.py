"""Tokenization: a tokenizer.json with the model's truncation and our own per-batch padding."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import numpy as np
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

from lightembed.config import read_json
from lightembed.errors import LightembedValueError
from lightembed.inputs import check_int

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


def _token_str(value: object) -> str | None:
    if isinstance(value, dict):  # AddedToken serialised as a dict
        value = value.get("content")
    return value if isinstance(value, str) else None


def _bad_text(texts: Sequence[TextInput]) -> str | None:
    """Why tokenizers rejected `texts`: which input holds what it cannot take (a lone surrogate)."""
    for i, item in enumerate(texts):
        parts = (item,) if isinstance(item, str) else item
        for j, text in enumerate(parts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = f"inputs[{i}]" if isinstance(item, str) else f"inputs[{i}][{j}]"
                return (
                    f"{where} is not valid Unicode: it holds the lone surrogate {text[exc.start]!r} at character "
                    f"{exc.start} (text decoded with errors='surrogateescape', or a broken UTF-16 pair). Clean it "
                    "first, e.g. text.encode('utf-8', 'replace').decode('utf-8')."
                )
    return None


class Tokenizer:
    """Wraps a `tokenizers.Tokenizer`: truncates to `max_length`, pads each batch to its longest input.

    Any padding or truncation fixed inside tokenizer.json is replaced, so a file that pads every input to
    128 tokens does not make every batch 128 tokens long. Setting `max_length` swaps in a reconfigured copy
    of the tokenizer instead of changing the one in use, so it is safe while other threads tokenize.
    `limit` (the model's position embeddings) bounds `max_length`.

    Texts with lone surrogates are rejected with a ValueError naming the input (they have no UTF-8 form).
    """

    def __init__(
        self,
        tokenizer: HFTokenizer,
        max_length: int | None,
        *,
        pad_id: int = 0,
        padding_side: str = "right",
        do_lower_case: bool = False,
        limit: int | None = None,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise LightembedValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.do_lower_case = do_lower_case
        self.limit = limit
        self.add_special_tokens = True
        self.drop_ids: frozenset[int] = frozenset()
        self.chars_per_token: int | None = None
        self.offsets = True
        if limit is not None and max_length is not None and max_length > limit:
            max_length = limit  # a config that asks for more positions than the model has
        self._configure(tokenizer, max_length)

    @classmethod
    def from_dir(
        cls,
        folder: str | Path,
        max_length: int | None = None,
        do_lower_case: bool = False,
        limit: int | None = None,
    ) -> "Tokenizer":
        """Load tokenizer.json (and tokenizer_config.json for pad token and padding side) from `folder`."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"No tokenizer.json in {folder}. lightembed needs a fast tokenizer file; "
                "export the model with lightembed-export, which writes one."
            )
        try:
            tokenizer = HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception with a serde message
            raise LightembedValueError(f"{path} is not a valid tokenizer file: {exc}") from None
        config = read_json(folder / "tokenizer_config.json")
        pad_id = None
        if tokenizer.padding is not None:
            pad_id = tokenizer.padding.get("pad_id")
        pad_token = _token_str(config.get("pad_token")) or _token_str(
            read_json(folder / "special_tokens_map.json").get("pad_token")
        )
        if pad_token is not None and tokenizer.token_to_id(pad_token) is not None:
            pad_id = tokenizer.token_to_id(pad_token)
        return cls(
            tokenizer,
            max_length,
            pad_id=pad_id if pad_id is not None else 0,
            padding_side=config.get("padding_side", "right"),
            do_lower_case=do_lower_case,
            limit=limit,
        )

    def _configure(self, tokenizer: HFTokenizer, max_length: int | None) -> None:
        if max_length is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        self._tokenizer, self._max_length = tokenizer, max_length

    def set_rules(
        self,
        *,
        add_special_tokens: bool = True,
        drop_ids: frozenset[int] = frozenset(),
        chars_per_token: int | None = None,
        offsets: bool = True,
    ) -> None:
        """How texts become tokens beyond truncation (a static-embedding model's, lightembed.static): without the
        special tokens; with `drop_ids` (model2vec's unknown token) left out at padding; each text first cut to
        max_length * `chars_per_token` characters (model2vec's cut before tokenizing); `offsets` False skips
        computing the encodings' character offsets (tokenizers' encode_batch_fast), which nothing downstream reads."""
        self.add_special_tokens, self.drop_ids, self.chars_per_token = add_special_tokens, drop_ids, chars_per_token
        self.offsets = offsets

    @property
    def max_length(self) -> int | None:
        return self._max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        if value is not None:
            value = check_int(value, "max_seq_length")
            if self.limit is not None and value > self.limit:
                raise LightembedValueError(
                    f"max_seq_length={value} is more than this model's {self.limit} position embeddings; "
                    f"use at most {self.limit}."
                )
        # A copy, not the tokenizer in use: reconfiguring one that another thread is encoding with raises
        # tokenizers' "Already borrowed".
        self._configure(HFTokenizer.from_str(self._tokenizer.to_str()), value)

    @property
    def backend(self) -> HFTokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tokenizer

    def truncating_at(self, max_length: int | None) -> "Tokenizer":
        """This tokenizer if it truncates at `max_length` already (or `max_length` is None), else a copy that does
        (at most the model's positions), with the same padding; the copy shares nothing mutable with it."""
        if max_length is None or max_length == self.max_length:
            return self
        limit = self.limit
        return Tokenizer(
            HFTokenizer.from_str(self._tokenizer.to_str()), min(max_length, limit) if limit else max_length,
            pad_id=self.pad_id, padding_side=self.padding_side, do_lower_case=self.do_lower_case, limit=limit,
        )  # fmt: skip

    def encode(self, texts: Sequence[TextInput]) -> list[Encoding]:
        """Tokenize texts (or text pairs), truncated and unpadded."""
        if self.do_lower_case:
            texts = [t.lower() if isinstance(t, str) else (t[0].lower(), t[1].lower()) for t in texts]
        texts = list(texts)
        if self.chars_per_token is not None and self._max_length is not None:
            cut = self._max_length * self.chars_per_token
            texts = [t[:cut] if isinstance(t, str) else (t[0][:cut], t[1][:cut]) for t in texts]
        encode = self._tokenizer.encode_batch if self.offsets else self._tokenizer.encode_batch_fast
        return self._checked(encode, texts)

    def _checked(self, encode: Callable[..., list[Encoding]], texts: list[TextInput]) -> list[Encoding]:
        """`encode(texts)` (with this tokenizer's special-token rule), its failure on bad text named."""
        try:
            return encode(texts, add_special_tokens=self.add_special_tokens)
        except (TypeError, ValueError, UnicodeError) as exc:
            reason = _bad_text(texts)
            if reason is None:
                raise
            raise LightembedValueError(reason) from exc

    def windows(self, texts: Sequence[str], size: int | None, overlap: int) -> list[list[Encoding]]:
        """Each text as windows of at most `size` tokens (special tokens included), consecutive windows sharing
        `overlap` tokens (tokenizers' truncation stride); with character offsets into the text. `size=None`: each
        text whole, in one window, however long (for a pass over all of it)."""
        tokenizer = HFTokenizer.from_str(self._tokenizer.to_str())  # a copy: the one in use keeps its truncation
        if size is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length=size, stride=overlap, strategy="longest_first")
        if self.do_lower_case:  # lower() keeps the length of almost all text; offsets index the text as given
            texts = [t.lower() for t in texts]
        encodings = self._checked(tokenizer.encode_batch, list(texts))
        return [[e, *e.overflowing] for e in encodings]

    def pad(self, encodings: Sequence[Encoding]) -> Batch:
        """Stack encodings into int64 arrays padded to the longest one (leaving out `drop_ids`)."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        all_ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        all_types = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64, count=total)
        if self.drop_ids:
            keep = ~np.isin(all_ids, list(self.drop_ids))
            rows = np.repeat(np.arange(len(encodings)), lengths)
            lengths = np.bincount(rows[keep], minlength=len(encodings)).astype(np.int64)
            all_ids, all_types, total = all_ids[keep], all_types[keep], int(keep.sum())
        width = int(lengths.max()) if len(encodings) else 0
        # One boolean mask places every token at once: the real tokens of each row are contiguous and in order, and
        # boolean assignment fills row by row, so the concatenated ids land where they belong (left or right).
        columns = np.arange(width)
        if self.padding_side == "left":
            real = columns >= (width - lengths)[:, None]
        else:
            real = columns < lengths[:, None]
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        ids[real], types[real] = all_ids, all_types
        return Batch(ids, real.astype(np.int64), types, lengths)

    def batches(
        self, texts: Sequence[TextInput], batch_size: int, max_tokens: int | None = None
    ) -> Iterator[tuple[np.ndarray, Batch]]:
        """Yield (original indices, padded batch), longest inputs first (see `plan_batches`)."""
        encodings = self.encode(texts)
        for idx in plan_batches(token_counts(encodings), batch_size, max_tokens):
            yield idx, self.pad([encodings[i] for i in idx])

    def __call__(self, texts: Sequence[TextInput]) -> Batch:
        return self.pad(self.encode(texts))

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt takes at the start of an input, not counting a trailing special token."""
        enc = self.encode([prompt])[0]
        n = len(enc.ids)
        if n and enc.special_tokens_mask[-1]:
            n -= 1
        return n


def token_counts(encodings: Sequence[Encoding]) -> np.ndarray:
    """Tokens per encoding, int64."""
    return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))


def plan_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Original indices of each batch, longest inputs first, so each batch pads little.

    A batch holds at most `batch_size` inputs and, when `max_tokens` is set, at most that many padded
    tokens (rows x longest), which bounds the memory a batch of long documents takes (one input alone may
    exceed it).
    """
    order = np.argsort(-lengths, kind="stable")
    plan: list[np.ndarray] = []
    start = 0
    while start < len(order):
        rows = batch_size
        if max_tokens is not None:
            rows = max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
        plan.append(order[start : start + rows])
        start += rows
    return plan

"""Causal-LM rerankers (Qwen3-Reranker, bge-reranker-v2-gemma, mxbai-rerank-v2): sentence-transformers 6's
CrossEncoder of a `Transformer` (text-generation) followed by a `LogitScore` module.

The score of a (query, document) pair is read from the language model's logits at the last token: the logit of the
"true" token (e.g. "yes"), minus that of the "false" token ("no") when there is one (LogitScore's formula). The
exported graph gathers those one or two logits at the last position itself, so they are all that leave it; the
graph's metadata names the token ids it gathers (`TOKEN_IDS_KEY`), checked here against the LogitScore config.

Inputs are left-padded (as sentence-transformers forces for causal models), so the last position is every row's
last real token; `scores` refuses a batch that is not.

A pair reaches the model in one of two ways, as in sentence-transformers:
- the tokenizer has no chat template: the two texts go through the tokenizer's own pair encoding, the prompt in front
  of the query (`read` returns a reranker with `template=None`);
- it has one: sentence-transformers renders a conversation of a "query" and a "document" message (a prompt is a
  "system" message before them) with the chat template. lightembed-export rendered that template with placeholder
  texts and checked that each text lands verbatim in one place; `pair_template.json` holds the pieces
  (`PairTemplate`), so the runtime joins strings instead of running Jinja. A row cut at max_seq_length gets the
  template's fixed tail written back over its last tokens, as sentence-transformers' `restore_suffix` does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence, cast

import numpy as np
from tokenizers import Encoding

from lightembed.errors import LightembedTypeError, LightembedValueError, ModelFileError
from lightembed.jsonfiles import read_json, read_json_file
from lightembed.tokenize import Tokenizer

LOGIT_SCORE = "LogitScore"
PAIR_TEMPLATE_FILE = "pair_template.json"
TOKEN_IDS_KEY = "lightembed.logit_score_token_ids"
"""ONNX metadata: the JSON list of the vocabulary ids whose last-token logits the graph outputs, in order."""
_LOGIT_SCORE_KEYS = ("true_token_id", "false_token_id", "module_input_name")
_LOGIT_SCORE_INPUT = "causal_logits"
SLOTS = ("system", "query", "document")
SUFFIX_FILLERS = ("0", "1 2 3 4")
"""The fillers sentence-transformers renders a conversation's skeleton with to find the template's tail."""


class SystemPair(NamedTuple):
    """A (query, document) pair with the system prompt it is rendered with (a chat-template reranker's prompt)."""

    system: str
    query: str
    document: str


@dataclass
class RestoredRow:
    """The tokens of a row cut at max_seq_length whose last tokens were replaced by the template's tail; read
    like a tokenizers Encoding by padding and the server (ids, type_ids, overflowing)."""

    ids: list[int]
    type_ids: list[int]
    overflowing: list[Any]


@dataclass(frozen=True)
class PairTemplate:
    """A chat template pre-rendered by lightembed-export: each variant is a list of pieces, a piece either literal
    text or the name of a slot ("system", "query", "document") the text of that name goes into, verbatim."""

    plain: tuple[tuple[str, bool], ...]
    """The conversation without a system message: (text, is_slot) pieces."""
    with_system: tuple[tuple[str, bool], ...] | None
    """With a system message (the prompt); None when the template cannot take one (`system_refused` says why)."""
    system_refused: str | None
    restore_suffix: bool
    """Whether a truncated row gets the template's tail back (sentence-transformers' chat_template restore_suffix)."""
    chat_template_sha256: str | None = None
    """The digest (`template_digest`) of the chat template the pieces were rendered from."""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """The Transformer's chat_template processing_kwargs they were rendered with."""

    @classmethod
    def read(cls, path: Path) -> PairTemplate:
        data = read_json(path)
        try:
            plain = _pieces(data["plain"])
            with_system = _pieces(data["with_system"]) if data.get("with_system") is not None else None
            restore = data.get("restore_suffix", True)
            if not isinstance(restore, bool):
                raise LightembedTypeError("restore_suffix must be true or false")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path} is not a pair template lightembed-export wrote: {exc}") from None
        refused = data.get("system_refused")
        digest, kwargs = data.get("chat_template_sha256"), data.get("chat_template_kwargs")
        return cls(
            plain, with_system, refused if isinstance(refused, str) else None, restore,
            digest if isinstance(digest, str) else None, kwargs if isinstance(kwargs, dict) else {},
        )  # fmt: skip

    def check_folder(self, folder: Path) -> None:
        """A ModelFileError when the folder's chat template or its processing_kwargs are not the ones the pieces
        were rendered from (edited after the export): lightembed would write pairs the old way."""
        text = chat_template_text(folder)
        if text is None or template_digest(text) != self.chat_template_sha256:
            raise ModelFileError(
                f"The chat template in {folder} is not the one lightembed-export rendered into {PAIR_TEMPLATE_FILE}; "
                "export the model again after changing it."
            )
        st_config = read_json(folder / "sentence_bert_config.json")
        processing = st_config.get("processing_kwargs") or {}
        kwargs = processing.get("chat_template", {}) if isinstance(processing, dict) else {}
        if kwargs != self.chat_template_kwargs:
            raise ModelFileError(
                f"The chat_template processing_kwargs {kwargs!r} in {folder / 'sentence_bert_config.json'} are not "
                f"the ones {PAIR_TEMPLATE_FILE} was rendered with ({self.chat_template_kwargs!r}); export the model "
                "again after changing them."
            )

    def render(self, query: str, document: str, system: str | None = None, *, why: str = "") -> str:
        """The conversation's text: the pieces joined, each slot filled with its text as it is."""
        pieces = self.plain
        if system is not None:
            if self.with_system is None:
                raise LightembedValueError(
                    f"This reranker's chat template takes no system message, so a prompt cannot be used{why}: "
                    f"{self.system_refused or 'lightembed-export could not render one'}."
                )
            pieces = self.with_system
        values = {"system": system or "", "query": query, "document": document}
        return "".join(values[text] if is_slot else text for text, is_slot in pieces)


def chat_template_text(folder: Path) -> str | None:
    """The folder's chat template as transformers reads it: chat_template.jinja, else tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    value = read_json(folder / "tokenizer_config.json").get("chat_template")
    return value if isinstance(value, str) else None


def template_digest(text: str) -> str:
    """Hex SHA-256 of a chat template's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pieces(raw: Any) -> tuple[tuple[str, bool], ...]:
    if not isinstance(raw, list):
        raise LightembedTypeError("a template variant must be a list of pieces")
    pieces = []
    for piece in raw:
        if isinstance(piece, dict) and isinstance(piece.get("text"), str) and len(piece) == 1:
            pieces.append((piece["text"], False))
        elif isinstance(piece, dict) and piece.get("slot") in SLOTS and len(piece) == 1:
            pieces.append((piece["slot"], True))
        else:
            raise LightembedValueError(f"unknown piece {piece!r}")
    return tuple(pieces)


@dataclass
class CausalReranker:
    """What turns a causal LM's graph into reranker scores: LogitScore's token ids, and how pairs are written."""

    true_token_id: int
    false_token_id: int | None
    template: PairTemplate | None
    _suffixes: dict[str | None, list[int]] = field(default_factory=dict, repr=False)

    @property
    def token_ids(self) -> list[int]:
        """The vocabulary ids whose logits the graph outputs: [true] or [true, false]."""
        return [self.true_token_id] + ([] if self.false_token_id is None else [self.false_token_id])

    def check_graph(self, metadata: dict[str, str], width: int | None, path: Any) -> None:
        """A ModelFileError unless the graph outputs exactly the logits of this LogitScore's tokens."""
        raw = metadata.get(TOKEN_IDS_KEY)
        try:
            gathered = json.loads(raw) if raw is not None else None
        except ValueError:
            gathered = None
        if gathered != self.token_ids:
            raise ModelFileError(
                f"{path} does not output the last-token logits of the LogitScore tokens {self.token_ids} (its "
                f"{TOKEN_IDS_KEY} metadata is {raw!r}): export the reranker with lightembed-export, which gathers them "
                "in the graph."
            )
        if width is not None and width != len(self.token_ids):
            raise ModelFileError(f"{path} outputs {width} logits per row; LogitScore reads {len(self.token_ids)}.")

    def configure(self, tokenizer: Tokenizer) -> None:
        """Left padding, as sentence-transformers sets on load for causal models; a chat template's rendered text
        is tokenized without the tokenizer's special tokens, as transformers' apply_chat_template does."""
        tokenizer.padding_side = "left"
        if self.template is not None:
            tokenizer.set_rules(add_special_tokens=False)

    def scores(self, attention_mask: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """(rows, 1) LogitScore scores from the graph's (rows, 1 or 2) last-token logits: true - false, or true."""
        mask = np.asarray(attention_mask)
        if mask.ndim != 2 or (mask.shape[1] and not mask[:, -1].all()):
            raise LightembedValueError(
                "At least one row of the batch ends in padding, but a causal-LM reranker reads the last position: "
                "its inputs must be left-padded (the tokenizer's padding_side was changed after loading; set "
                "model.tokenizer_wrapper.padding_side = 'left')."
            )
        if logits.ndim != 2 or logits.shape[1] != len(self.token_ids):
            raise LightembedValueError(
                f"The graph returned logits of shape {logits.shape}; expected (batch, {len(self.token_ids)})."
            )
        score = logits[:, :1] if self.false_token_id is None else logits[:, :1] - logits[:, 1:2]
        return np.asarray(score, dtype=np.float32)

    # ----- pairs to tokens ---------------------------------------------------------------------------------------
    def encode(self, tokenizer: Tokenizer, items: Sequence[Any]) -> list[Encoding]:
        """Pairs (or SystemPairs) to unpadded tokens: through the chat template when there is one, else the
        tokenizer's pair encoding (a SystemPair's prompt in front of its query, as sentence-transformers does)."""
        if self.template is None:
            plain = [(s.system + s.query, s.document) if isinstance(s, SystemPair) else tuple(s) for s in items]
            return tokenizer.encode(cast(Sequence[tuple[str, str]], plain))
        template = self.template
        systems = [s.system if isinstance(s, SystemPair) else None for s in items]
        texts = [
            template.render(s.query, s.document, s.system) if isinstance(s, SystemPair) else template.render(*s)
            for s in items
        ]
        encodings: list[Any] = tokenizer.encode(texts)
        limit = tokenizer.max_length
        if template.restore_suffix and limit is not None:
            for i, enc in enumerate(encodings):
                if len(enc.ids) >= limit:
                    encodings[i] = self._restored(enc, self._suffix(tokenizer, systems[i]))
        # RestoredRow stands in for an Encoding: padding, planning and the server read only its ids, type_ids and
        # overflowing.
        return cast(list[Encoding], encodings)

    @staticmethod
    def _restored(enc: Encoding, suffix: list[int]) -> Any:
        keep = min(len(suffix), len(enc.ids))
        if keep == 0:
            return enc
        ids = list(enc.ids)
        ids[len(ids) - keep :] = suffix[len(suffix) - keep :]
        return RestoredRow(ids, list(enc.type_ids), list(enc.overflowing))

    def _suffix(self, tokenizer: Tokenizer, system: str | None) -> list[int]:
        """The template's fixed tail as sentence-transformers derives it: the longest common token suffix of the
        conversation rendered with two different fillers for its query and document (the system text kept), unless
        the renders never differ."""
        if system not in self._suffixes:
            assert self.template is not None
            texts = [self.template.render(f, f, system) for f in SUFFIX_FILLERS]
            first, second = (list(windows[0].ids) for windows in tokenizer.windows(texts, None, 0))
            count = 0
            for left, right in zip(reversed(first), reversed(second)):
                if left != right:
                    break
                count += 1
            suffix = first[len(first) - count :] if 0 < count < min(len(first), len(second)) else []
            if len(self._suffixes) > 64:  # prompts are few; keep the cache bounded anyway
                self._suffixes.clear()
            self._suffixes[system] = suffix
        return self._suffixes[system]


def read(folder: Path) -> CausalReranker | None:
    """The folder's causal-LM reranker (its modules.json has a LogitScore), or None for a sequence-classification
    cross-encoder. A LogitScore option lightembed does not run, or another module beside it, is refused by name."""
    entries = read_json_file(folder / "modules.json", [])
    if not isinstance(entries, list):
        return None
    kinds = [str(e.get("type", "")).rsplit(".", 1)[-1] if isinstance(e, dict) else "" for e in entries]
    if LOGIT_SCORE not in kinds:
        return None
    if kinds != ["Transformer", LOGIT_SCORE]:
        raise ModelFileError(
            f"{folder / 'modules.json'} has the modules {kinds}; lightembed runs a causal-LM reranker as a Transformer "
            "followed by LogitScore only."
        )
    entry = entries[1]
    path = folder / str(entry.get("path", "")) / "config.json"
    config = read_json(path)
    unknown = sorted(set(config) - set(_LOGIT_SCORE_KEYS))
    if unknown:
        raise ModelFileError(f"LogitScore options {unknown} in {path} are not supported by lightembed.")
    source = config.get("module_input_name", _LOGIT_SCORE_INPUT)
    if source != _LOGIT_SCORE_INPUT:
        raise ModelFileError(
            f"LogitScore module_input_name={source!r} in {path} is not supported: lightembed's graph gives the "
            f"causal LM's last-token logits ({_LOGIT_SCORE_INPUT!r})."
        )
    true_id, false_id = config.get("true_token_id"), config.get("false_token_id")
    for name, value in (("true_token_id", true_id), ("false_token_id", false_id)):
        if value is None and name == "false_token_id":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelFileError(f"LogitScore {name} in {path} must be a vocabulary id, got {value!r}.")
    template_path = folder / PAIR_TEMPLATE_FILE
    template = PairTemplate.read(template_path) if template_path.is_file() else None
    if template is not None:
        template.check_folder(folder)
    return CausalReranker(int(cast(int, true_id)), None if false_id is None else int(false_id), template)

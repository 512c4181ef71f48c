"""Static-embedding folders: sentence-transformers' `StaticEmbedding` and model2vec's `StaticModel`, which hold a
table of token vectors (model.safetensors) and a tokenizer instead of a transformer graph.

A text's vector is the mean of its tokens' rows, tokenized without special tokens; the table runs through the
`static` graph backend (lightembed.graphs.static). The two libraries differ in the rules around that mean, and a
folder gets its own library's rules:
- sentence-transformers: the tokenizer.json's own truncation (none unless the file sets one), every token counts,
  then the modules after the first (Normalize, Dense) as modules.json lists them;
- model2vec (config.json beside a table named `embeddings`): texts cut to `max_length` (config.json, default 512) times
  the median token length in characters, then to `max_length` tokens; the unknown token is dropped; per-token
  `weights` and a token-to-row `mapping` when the file holds them; Normalize when config.json's `normalize` is true.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightembed.errors import LightembedValueError
from lightembed.jsonfiles import read_json
from lightembed.safetensors_io import tensor_names

TABLE_FILE = "model.safetensors"
STATIC_MODULE = "StaticEmbedding"
SPARSE_STATIC_MODULE = "SparseStaticEmbedding"
"""sentence-transformers' sparse table: one weight per vocabulary token (e.g. IDF), the query side of inference-free
SPLADE models (lightembed.sparse_encoder)."""
MODEL2VEC: Literal["model2vec"] = "model2vec"
SENTENCE_TRANSFORMERS: Literal["sentence-transformers"] = "sentence-transformers"
MODEL2VEC_MAX_LENGTH = 512  # model2vec's default when config.json does not set max_length
MODEL2VEC_TABLE = "embeddings"  # model2vec's tensor name; sentence-transformers saves "embedding.weight"

Kind = Literal["sentence-transformers", "model2vec"]
ModuleEntry = tuple[str, Path, str]


@dataclass(frozen=True)
class StaticLayout:
    """Where a static folder's table and tokenizer are, and whose rules its vectors follow."""

    kind: Kind
    module_dir: Path
    """The folder holding tokenizer.json and model.safetensors."""
    max_length: int | None
    """Tokens a text is cut to (None: not cut)."""
    modules: tuple[ModuleEntry, ...]
    """The modules after the table, as modules.json entries (class name, folder, type)."""

    @property
    def table(self) -> Path:
        return self.module_dir / TABLE_FILE

    @property
    def is_model2vec(self) -> bool:
        return self.kind == MODEL2VEC


def is_model2vec_folder(folder: Path) -> bool:
    """Whether `folder` holds a model2vec model: config.json, tokenizer.json and a model.safetensors whose table is
    model2vec's `embeddings` (model2vec's own test of a folder, by its files)."""
    files = (folder / "config.json", folder / "tokenizer.json", folder / TABLE_FILE)
    return all(f.is_file() for f in files) and MODEL2VEC_TABLE in tensor_names(folder / TABLE_FILE)


def read_layout(folder: Path, modules: list[ModuleEntry] | None) -> StaticLayout | None:
    """The static layout of `folder` (its modules.json entries `modules`, None without one), or None when the folder
    is not a static-embedding model."""
    if modules:
        kind, path, _ = modules[0]
        if kind != STATIC_MODULE:
            return None
        module_dir, rest = path, tuple(modules[1:])
    elif is_model2vec_folder(folder):
        module_dir, rest = folder, ()
    else:
        return None
    if not (module_dir / TABLE_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is a static-embedding model ({STATIC_MODULE}) but {module_dir / TABLE_FILE} is missing: the "
            "table of token vectors must be a safetensors file (pytorch_model.bin cannot be read without torch)."
        )
    if is_model2vec_folder(module_dir):
        config = read_json(module_dir / "config.json")
        # model2vec's own flag decides normalization (its modules.json mirrors it for sentence-transformers)
        rest = tuple(m for m in rest if m[0] != "Normalize")
        if config.get("normalize", False) is True:
            rest += (("Normalize", module_dir / "1_Normalize", "Normalize"),)
        length = config.get("max_length", MODEL2VEC_MAX_LENGTH)
        return StaticLayout(MODEL2VEC, module_dir, _length(length, module_dir / "config.json"), rest)
    return StaticLayout(SENTENCE_TRANSFORMERS, module_dir, _tokenizer_truncation(module_dir), rest)


def _length(value: Any, where: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LightembedValueError(f"max_length in {where} must be a positive integer or null, got {value!r}.")
    return value


def _tokenizer_truncation(module_dir: Path) -> int | None:
    """The truncation length tokenizer.json fixes (sentence-transformers keeps it for a StaticEmbedding)."""
    path = module_dir / "tokenizer.json"
    try:
        truncation = json.loads(path.read_text(encoding="utf-8")).get("truncation")
    except (OSError, ValueError):
        return None  # the tokenizer loader names a missing or broken file
    return _length(truncation.get("max_length"), path) if isinstance(truncation, dict) else None


def unknown_token_id(tokenizer: Any) -> int | None:
    """The id of a `tokenizers.Tokenizer`'s unknown token (model2vec drops it from every text), or None."""
    model = tokenizer.model
    if hasattr(model, "unk_token"):  # WordPiece, BPE, WordLevel
        token = model.unk_token
        return None if token is None else tokenizer.token_to_id(token)
    unk = json.loads(tokenizer.to_str())["model"].get("unk_id")  # Unigram
    return unk if isinstance(unk, int) else None


def median_token_length(tokenizer: Any) -> int:
    """The median length in characters of the vocabulary's tokens: model2vec cuts a text to this many characters per
    token of max_length before tokenizing it."""
    return int(np.median([len(token) for token in tokenizer.get_vocab()]))


def tokenizer_rules(layout: StaticLayout, tokenizer: Any) -> dict[str, Any]:
    """The keywords of `lightembed.tokenize.Tokenizer.set_rules` that a static folder's library tokenizes with."""
    if not layout.is_model2vec:
        return {"add_special_tokens": False, "offsets": False}
    unk = unknown_token_id(tokenizer)
    return {
        "add_special_tokens": False,
        "offsets": False,
        "drop_ids": frozenset() if unk is None else frozenset({unk}),
        "chars_per_token": median_token_length(tokenizer),
    }


def sparse_static_dir(modules: list[ModuleEntry] | None) -> Path | None:
    """The SparseStaticEmbedding module folder of a folder whose first module it is (its modules.json entries
    `modules`), or None."""
    if not modules or modules[0][0] != SPARSE_STATIC_MODULE:
        return None
    if not (modules[0][1] / TABLE_FILE).is_file():
        raise FileNotFoundError(
            f"{modules[0][1]} is a {SPARSE_STATIC_MODULE} module but its {TABLE_FILE} is missing: the token weights "
            "must be a safetensors file (pytorch_model.bin cannot be read without torch)."
        )
    return modules[0][1]


def tokenizer_max_length(module_dir: Path) -> int | None:
    """The truncation a transformers tokenizer applies with truncation=True: tokenizer_config.json's
    model_max_length (None when unset or transformers' "no limit" placeholder)."""
    value = read_json(module_dir / "tokenizer_config.json").get("model_max_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9 else None

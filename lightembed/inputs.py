"""Validation of what users pass to encode(): clear errors instead of crashes or silent garbage."""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np

from lightembed.errors import LightembedTypeError, LightembedValueError

PrecisionName = Literal["float32", "int8", "uint8", "binary", "ubinary"]
ALLOWED_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings", None)


def as_text_list(inputs: Any, name: str = "inputs") -> tuple[list[str], bool]:
    """Return (texts, was_single_string). Rejects None, bytes, nested lists and non-string items."""
    if inputs is None:
        raise LightembedTypeError(f"{name} must be a string or a list of strings, got None.")
    if isinstance(inputs, np.ndarray) and inputs.ndim == 0:
        inputs = inputs.item()  # a 0-d array holds one value: one text, not its characters
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, (bytes, bytearray)):
        raise LightembedTypeError(f"{name} must be str, not {type(inputs).__name__}; decode it first (e.g. .decode('utf-8')).")
    if isinstance(inputs, dict):
        raise LightembedTypeError(f"{name} must be a string or a list of strings, got a dict.")
    if hasattr(inputs, "tolist") and not isinstance(inputs, (list, tuple)):
        inputs = inputs.tolist()  # numpy arrays of strings
    try:
        texts = list(inputs)
    except TypeError:
        raise LightembedTypeError(f"{name} must be a string or a list of strings, got {type(inputs).__name__}.") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            kind = "None" if text is None else type(text).__name__
            extra = (
                " (nested lists are not accepted: pass a flat list of strings)"
                if isinstance(text, (list, tuple))
                else ""
            )
            raise LightembedTypeError(f"{name}[{i}] must be a string, got {kind}{extra}.")
    return texts, False


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as a Python int (NumPy integers count; bools do not); ValueError naming `name` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise LightembedValueError(f"{name} must be {kind}, got {value!r}.")
    return int(value)


def check_batch_size(batch_size: Any) -> int:
    return check_int(batch_size, "batch_size")


def check_precision(precision: Any) -> PrecisionName:
    """`precision` if encode() supports it; ValueError naming the choices otherwise."""
    if precision not in ALLOWED_PRECISIONS:
        raise LightembedValueError(f"Precision {precision!r} is not supported, must be one of {ALLOWED_PRECISIONS}.")
    return cast(PrecisionName, precision)


def check_truncate_dim(truncate_dim: Any) -> int | None:
    if truncate_dim is None:
        return None
    return check_int(truncate_dim, "truncate_dim")


def pop_legacy(kwargs: dict[str, Any], current: Any, *old_names: str) -> Any:
    """Take a renamed argument's value from its old name(s) in `kwargs` unless the new name was given."""
    for name in old_names:
        if name in kwargs:
            value = kwargs.pop(name)
            if current is None:
                current = value
    return current


def take_sentences(inputs: Any, kwargs: dict[str, Any]) -> Any:
    """The inputs, or sentence-transformers' older `sentences=` keyword (TypeError if both are given)."""
    if "sentences" not in kwargs:
        return inputs
    if inputs is not None:
        raise LightembedTypeError("Pass either inputs or sentences, not both.")
    return kwargs.pop("sentences")


def resolve_prompt(
    prompts: dict[str, str], default_prompt_name: str | None, prompt: str | None, prompt_name: str | None
) -> str | None:
    """sentence-transformers' prompt lookup: `prompt` wins over `prompt_name`, else the default prompt."""
    if prompt is not None:
        if not isinstance(prompt, str):
            raise LightembedTypeError(f"prompt must be a string, got {type(prompt).__name__}.")
        if prompt_name is not None:
            import logging  # imported here, not at module level: it is only needed for this warning

            logging.getLogger(__name__).warning(
                "Both prompt and prompt_name given; using prompt and ignoring prompt_name."
            )
        return prompt
    if prompt_name is not None:
        if not isinstance(prompt_name, str):
            raise LightembedTypeError(
                f"prompt_name must be a string, got {type(prompt_name).__name__} {prompt_name!r}. "
                "(In sentence-transformers 5.x the argument after the inputs is prompt_name; pass "
                "batch_size=... by keyword.)"
            )
        if prompt_name not in prompts:
            raise LightembedValueError(f"Prompt name {prompt_name!r} not found in the configured prompts {list(prompts)!r}.")
        return prompts[prompt_name]
    if default_prompt_name is not None:
        return prompts.get(default_prompt_name)
    return None


def merge_prompts(
    configured: dict[str, str],
    configured_default: str | None,
    prompts: dict[str, str] | None,
    default_prompt_name: str | None,
) -> tuple[dict[str, str], str | None]:
    """The model's prompts updated with the caller's, and the default prompt name, which must name one."""
    merged = dict(configured)
    if prompts:
        merged.update(prompts)
    default = default_prompt_name or configured_default
    if default is not None and default not in merged:
        raise LightembedValueError(f"Default prompt name {default!r} is not in the prompts {list(merged)}.")
    return merged, default


def take_task_options(kwargs: dict[str, Any]) -> None:
    """Remove sentence-transformers 6's `task` and `processing_kwargs` from encode() keywords. `task` only routes
    a Router module or picks a Transformer's query_length/document_length, which lightembed refuses at load for
    these models, so it changes nothing; `processing_kwargs` changes the tokenization and is refused unless empty."""
    task = kwargs.pop("task", None)
    if task is not None and not isinstance(task, str):
        raise LightembedTypeError(f"task must be a string such as 'query' or 'document', got {type(task).__name__}.")
    processing = kwargs.pop("processing_kwargs", None)
    if processing:
        raise LightembedValueError(
            f"processing_kwargs={processing!r} is not supported by this lightembed model: it tokenizes with "
            "tokenizer.json and max_seq_length (set model.max_seq_length to change the truncation)."
        )


# ----- (text, text) pairs: a CrossEncoder's inputs -------------------------------------------------------
def check_text(value: Any, where: str) -> str:
    """`value` as a str (a NumPy string too); TypeError naming `where` for anything else."""
    if isinstance(value, str):
        return value
    if value is None:
        raise LightembedTypeError(f"{where} is None; every pair needs two strings.")
    if isinstance(value, (bytes, bytearray)):
        raise LightembedTypeError(f"{where} is {type(value).__name__}; decode it to str first (e.g. .decode('utf-8')).")
    if isinstance(value, np.str_):
        return str(value)
    raise LightembedTypeError(f"{where} must be a string, got {type(value).__name__}.")


def _check_pair(pair: Any, where: str) -> tuple[str, str]:
    if isinstance(pair, np.ndarray):
        pair = pair.tolist()
    if isinstance(pair, str):
        raise LightembedTypeError(
            f"{where} is a single string; a CrossEncoder scores (text, text) pairs: pass [(query, document), ...]."
        )
    if not isinstance(pair, (list, tuple)):
        kind = "None" if pair is None else type(pair).__name__
        raise LightembedTypeError(f"{where} must be a (text, text) pair, got {kind}.")
    if len(pair) != 2:
        raise LightembedValueError(
            f"{where} has {len(pair)} items; a pair must have exactly 2 texts. "
            "To score several pairs, pass a list of pairs: [(query, doc1), (query, doc2), ...]."
        )
    return check_text(pair[0], f"{where}[0]"), check_text(pair[1], f"{where}[1]")


def as_pairs(inputs: Any) -> tuple[list[tuple[str, str]], bool]:
    """(pairs, was_single_pair) with sentence-transformers' rule: a list/tuple whose first item is not itself a
    list/tuple is one pair; otherwise it is a batch of pairs. Errors name the offending index."""
    if inputs is None:
        raise LightembedTypeError("inputs must be a (text, text) pair or a list of pairs, got None.")
    if isinstance(inputs, (str, bytes, bytearray)):
        raise LightembedTypeError(
            f"inputs is a single {type(inputs).__name__}; a CrossEncoder scores (text, text) pairs: "
            "pass (query, document) or [(query, document), ...]."
        )
    if isinstance(inputs, dict):
        raise LightembedTypeError("inputs must be a (text, text) pair or a list of pairs, got a dict.")
    if isinstance(inputs, np.ndarray):
        if inputs.size == 0:
            return [], False
        if inputs.ndim == 1:
            return [_check_pair(inputs.tolist(), "inputs")], True
        inputs = inputs.tolist()
    elif not isinstance(inputs, (list, tuple)):
        try:
            inputs = list(inputs)
        except TypeError:
            raise LightembedTypeError(
                f"inputs must be a (text, text) pair or a list of pairs, got {type(inputs).__name__}."
            ) from None
        if inputs and not isinstance(inputs[0], (list, tuple, np.ndarray)):
            raise LightembedTypeError(f"inputs[0] must be a (text, text) pair, got {type(inputs[0]).__name__}.")
    if len(inputs) > 0 and not isinstance(inputs[0], (list, tuple, np.ndarray)):
        return [_check_pair(inputs, "inputs")], True
    return [_check_pair(pair, f"inputs[{i}]") for i, pair in enumerate(inputs)], False

"""Reading the JSON files of a model folder: one error policy (a broken file is an error naming it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightembed.errors import ModelFileError


def read_json_file(path: Path, missing: Any = None) -> Any:
    """The JSON value in `path` (`missing` if there is no such file); ValueError naming the file if it is broken."""
    if not path.is_file():
        return missing
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}") from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} if the file does not exist, ValueError naming the file if it is broken."""
    data = read_json_file(path, {})
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} must hold a JSON object.")
    return data

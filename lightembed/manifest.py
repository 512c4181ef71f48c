"""lightembed.json, the manifest the exporter writes beside the files it made: the one reader and the one (atomic)
writer, for the runtime, `lightembed preoptimize`/`save()` and the exporter alike.

What it holds, top level: `format_version`, `source`, `exporter`, `versions`, `model` (the task and the runtime
`class` the folder loads as), `verification`, and `files`, one record per ONNX file: its `path`, `sha256`,
whether it `passed` the comparison with sentence-transformers and its `metrics`, `external_data` files, and the
optional blocks `optimization`, `quantization`, `openvino` (its measurement on OpenVINO), `cpu_preoptimized`
(its pre-optimized copy, lightembed.graphs.preoptimized) and `tuned` (the backends timed on each machine class by
`lightembed tune`, lightembed.tune: a list, one entry per machine class and runtime versions).

One error policy: with `strict=True` (a model loaded with verify=True) a manifest that is present but cannot be
trusted (broken JSON, not an object, `files` not a list, a record without a path, a passed record without a
sha256) is an IntegrityError naming what is wrong, so a damaged manifest never turns the check off silently;
`strict=False` (verify=False, or a reader that only wants hints such as a file's precision) reads what it can.

`support_files` records the sha256 of every other file the runtime reads (configs, tokenizer files, module
weights), so a scrambled tokenizer.json or an edited config is caught at load like a damaged ONNX file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from lightembed.errors import IntegrityError
from lightembed.hashing import sha256_of

MANIFEST_NAME = "lightembed.json"
FORMAT_VERSION = 1
PREOPTIMIZED = "cpu_preoptimized"
SUPPORT_FILES = "support_files"
# What the runtime reads besides the ONNX files: configs and tokenizer files anywhere, weights of the modules after
# the transformer (their folders). The transformer's own torch weights at the top are not read (the ONNX file is).
_SUPPORT_SUFFIXES = (".json", ".txt", ".model")  # what lightembed.hub downloads besides the ONNX files
_SKIPPED_DIRS = (".git", ".cache", ".huggingface")
TUNED = "tuned"
Precision = Literal["float32", "float16", "bfloat16", "int8"]


@dataclass(frozen=True)
class DataFile:
    """An external data file of an ONNX file (or of its pre-optimized copy): path in the folder, sha256, size."""

    path: str
    sha256: str | None
    size: int | None

    @classmethod
    def parse(cls, raw: Any) -> DataFile | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("path"), str):
            return None
        size = raw.get("size")
        sha = raw.get("sha256")
        return cls(raw["path"], sha if isinstance(sha, str) else None, size if isinstance(size, int) else None)


@dataclass(frozen=True)
class Tuned:
    """One `lightembed tune` result for a file: the machine class and runtime versions it was timed on, the
    backend (and OpenVINO precision hint) that won, its speed over onnxruntime fp32 and its fidelity to it."""

    machine_class: dict[str, Any]
    versions: dict[str, Any]
    backend: str
    ov_precision: str | None
    label: str
    speedup: float | None
    min_cosine: float | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, raw: Any) -> Tuned | None:
        """The entry, or None for one without a machine class, versions or a chosen backend (it is ignored)."""
        if not isinstance(raw, Mapping):
            return None
        key, versions, choice = raw.get("machine_class"), raw.get("versions"), raw.get("choice")
        if not (isinstance(key, Mapping) and isinstance(versions, Mapping) and isinstance(choice, Mapping)):
            return None
        if not isinstance(choice.get("backend"), str):
            return None

        def number(name: str) -> float | None:
            value = choice.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        precision = choice.get("precision")
        return cls(
            machine_class=dict(key),
            versions=dict(versions),
            backend=choice["backend"],
            ov_precision=precision if isinstance(precision, str) else None,
            label=str(choice.get("label") or choice["backend"]),
            speedup=number("speedup"),
            min_cosine=number("min_cosine"),
            raw=dict(raw),
        )

    def matches(self, machine_class: Mapping[str, Any], versions: Mapping[str, Any]) -> bool:
        """Whether this entry was measured on `machine_class` with the same onnxruntime and OpenVINO versions."""
        return self.machine_class == dict(machine_class) and self.versions == dict(versions)


@dataclass(frozen=True)
class FileRecord:
    """One ONNX file's record."""

    path: str
    sha256: str | None
    passed: bool | None
    metrics: dict[str, Any] | None
    external_data: tuple[DataFile, ...] = ()
    preoptimized: dict[str, Any] | None = None
    """The record of the file's pre-optimized CPU copy, if one was written."""
    openvino: dict[str, Any] | None = None
    """The exporter's measurement of the file on OpenVINO, if it made one."""
    quantization: dict[str, Any] | None = None
    optimization: dict[str, Any] | None = None
    kind: str | None = None
    tuned: tuple[Tuned, ...] = ()
    """`lightembed tune`'s results for the file, one per machine class (lightembed.tune)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> FileRecord:
        def block(key: str) -> dict[str, Any] | None:
            value = raw.get(key)
            return dict(value) if isinstance(value, Mapping) else None

        data = raw.get("external_data")
        files = tuple(d for d in (DataFile.parse(x) for x in data) if d) if isinstance(data, list) else ()
        passed = raw.get("passed")
        sha = raw.get("sha256")
        tuned = raw.get(TUNED)
        return cls(
            path=str(raw["path"]),
            sha256=sha if isinstance(sha, str) else None,
            passed=passed if isinstance(passed, bool) else None,
            metrics=block("metrics"),
            external_data=files,
            preoptimized=block(PREOPTIMIZED),
            openvino=block("openvino"),
            quantization=block("quantization"),
            optimization=block("optimization"),
            kind=str(raw["kind"]) if raw.get("kind") is not None else None,
            tuned=tuple(t for t in (Tuned.parse(x) for x in tuned) if t) if isinstance(tuned, list) else (),
            raw=dict(raw),
        )

    def tuned_for(self, machine_class: Mapping[str, Any], versions: Mapping[str, Any]) -> Tuned | None:
        """The `lightembed tune` result measured on this machine class and runtime versions, or None."""
        return next((t for t in self.tuned if t.matches(machine_class, versions)), None)

    @property
    def precision(self) -> Precision | None:
        """What the file computes in, as its record says (None when the record does not say)."""
        kind = self.kind or ""
        if kind in ("fp16", "float16"):
            return "float16"
        if kind in ("bf16", "bfloat16"):
            return "bfloat16"
        if self.quantization:
            return "int8"
        if self.optimization is not None:
            if self.optimization.get("bf16"):
                return "bfloat16"
            if self.optimization.get("fp16"):
                return "float16"
            return "float32"
        return "float32" if kind == "fp32" else None


@dataclass(frozen=True)
class Manifest:
    """A folder's lightembed.json, read once."""

    folder: Path
    data: dict[str, Any]
    files: dict[str, FileRecord]
    support_files: tuple[DataFile, ...] = ()
    """The other files the runtime reads, with their sha256 (see the module docstring)."""

    @property
    def model_class(self) -> str | None:
        """The runtime class the exporter recorded for the folder ("SentenceTransformer", "CrossEncoder", ...)."""
        model = self.data.get("model")
        value = model.get("class") if isinstance(model, Mapping) else None
        return value if isinstance(value, str) else None

    def record(self, onnx_path: Path) -> FileRecord | None:
        """The record of `onnx_path` (a path inside the folder), or None when the manifest does not list it."""
        relative = relative_path(self.folder, onnx_path)
        return self.files.get(relative) if relative is not None else None


def relative_path(folder: Path, path: Path) -> str | None:
    """`path` relative to `folder` in POSIX form, or None when it lies outside."""
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return None


def read(folder: str | Path, strict: bool = True) -> Manifest | None:
    """The folder's manifest, or None when it has none. See the module docstring for the error policy."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return _distrust(strict, folder, f"{path} cannot be read as JSON ({exc})")
    if not isinstance(data, dict):
        return _distrust(strict, folder, f"{path} holds a JSON {type(data).__name__}, not an object")
    raw_files = data.get("files", [])
    if not isinstance(raw_files, list):
        return _distrust(strict, folder, f"{path}: `files` is a {type(raw_files).__name__}, not a list")
    files: dict[str, FileRecord] = {}
    for i, raw in enumerate(raw_files):
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
            if strict:
                raise IntegrityError(f"{path}: files[{i}] is not a record with a path; {_AGAIN}")
            continue
        record = FileRecord.parse(raw)
        if strict and record.passed is not False and record.sha256 is None:
            raise IntegrityError(f"{path}: files[{i}] ({record.path}) records no sha256 to check it by; {_AGAIN}")
        files[record.path] = record
    raw_support = data.get(SUPPORT_FILES, [])
    support = tuple(d for d in (DataFile.parse(x) for x in raw_support) if d) if isinstance(raw_support, list) else ()
    if strict and (not isinstance(raw_support, list) or len(support) != len(raw_support)):
        raise IntegrityError(f"{path}: `{SUPPORT_FILES}` is not a list of records with a path; {_AGAIN}")
    return Manifest(folder, data, files, support)


_AGAIN = "the manifest was damaged or edited: fetch or export the model again (verify=False loads it unchecked)."


def _distrust(strict: bool, folder: Path, why: str) -> Manifest | None:
    if strict:
        raise IntegrityError(f"{why}; {_AGAIN}")
    return Manifest(folder, {}, {})


def support_files(folder: str | Path) -> list[dict[str, Any]]:
    """Records (path, sha256, size) of the files of `folder` the runtime reads besides its ONNX files, for the
    manifest's `support_files`."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or rel.parts[0] in _SKIPPED_DIRS or rel.as_posix() == MANIFEST_NAME:
            continue
        weights = path.suffix == ".safetensors" and len(rel.parts) > 1  # a module's (Dense, StaticEmbedding) weights
        if path.suffix in _SUPPORT_SUFFIXES or weights:
            found.append({"path": rel.as_posix(), "sha256": sha256_of(path), "size": path.stat().st_size})
    return found


def write(folder: str | Path, data: Mapping[str, Any]) -> Path:
    """Write `data` as the folder's lightembed.json (UTF-8, indented, keys in insertion order), beside and
    renamed, so an interrupted write never leaves half a manifest."""
    folder = Path(folder)
    target = folder / MANIFEST_NAME
    text = json.dumps(dict(data), indent=2, ensure_ascii=False) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        handle.write(text)
    os.replace(handle.name, target)
    return target


def set_file_blocks(folder: str | Path, key: str, blocks: Mapping[str, Any]) -> None:
    """Store `blocks[path]` under `key` in the record of each listed file of the folder's manifest."""
    manifest = read(folder, strict=False)
    if manifest is None or not manifest.data:
        raise IntegrityError(f"{folder} has no readable {MANIFEST_NAME}.")
    data = manifest.data
    for entry in data.get("files", []):
        if isinstance(entry, dict) and entry.get("path") in blocks:
            entry[key] = blocks[entry["path"]]
    write(folder, data)

"""Checks an ONNX file against its record in the lightembed.json the exporter wrote beside it: its sha256, and whether it
passed the exporter's comparison with sentence-transformers.

A file the manifest does not list (a folder exported by other tools, a file added by hand) is not checked.

A file whose weights live in an external data file (`model.onnx` + `model.onnx_data`, as files over 2 GB must be)
is checked by its .onnx file's sha256, which covers the graph and every tensor's offset and length in the data
file, plus the data file's size; the data file's own sha256 (also recorded) is compared only on request
(`check_file(..., hash_external_data=True)`, as `lightembed verify` does), since hashing gigabytes at every load
would cost seconds to minutes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from lightembed.errors import IntegrityError
from lightembed.hashing import sha256_of
from lightembed.manifest import MANIFEST_NAME, DataFile, FileRecord


def check_file(
    model_dir: Path,
    onnx_path: Path,
    record: FileRecord | None,
    hash_external_data: bool = False,
    companion: Path | None = None,
) -> FileRecord | None:
    """Raise IntegrityError when `record` (the file's manifest record) says `onnx_path` failed its check, its bytes
    differ from the recorded sha256, or one of its external data files is missing or has another size (or, with
    `hash_external_data`, another sha256); return the record (None when the manifest does not list the file).

    With `companion` (the pre-optimized copy that will be loaded instead, lightembed.graphs.preoptimized), that
    copy's bytes and its data file's are checked against its record in place of `onnx_path`'s: the data file is
    hashed in full, as the weights inside a single .onnx file are."""
    entry = record
    if entry is None:
        return None
    if entry.passed is False:
        raise IntegrityError(
            f"{entry.path} failed the exporter's comparison with sentence-transformers "
            f"({MANIFEST_NAME} records metrics {entry.metrics}); it would give wrong embeddings. Load another file "
            "(`lightembed info` lists them) or re-export; pass verify=False only to inspect it."
        )
    if companion is not None:
        _check_companion(model_dir, companion, entry.preoptimized or {})
        return entry
    if entry.sha256:
        actual = sha256_of(onnx_path)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{onnx_path} does not match {MANIFEST_NAME}: sha256 {actual} instead of {entry.sha256}. The file "
                "was changed or damaged after export (an interrupted copy or download?); fetch or export it again."
            )
    for data in entry.external_data:
        _check_external_data(model_dir, data, hash_external_data)
    return entry


def _check_companion(model_dir: Path, path: Path, record: dict[str, Any]) -> None:
    expected = record.get("sha256")
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} does not match {MANIFEST_NAME}: sha256 {actual} instead of {expected}. The pre-optimized file "
            "was changed or damaged; delete it (the exported file then loads) or write it again with "
            "`lightembed preoptimize`."
        )
    for data in record.get("external_data") or []:
        parsed = DataFile.parse(data)
        if parsed is not None:
            _check_external_data(model_dir, parsed, True)


def _check_external_data(model_dir: Path, data: DataFile, hash_it: bool) -> None:
    path = model_dir / data.path
    again = "fetch or export it again (a Hub download must include the .onnx_data file beside the .onnx file)."
    if not path.is_file():
        raise IntegrityError(f"the external data file {path} that {MANIFEST_NAME} lists is missing; {again}")
    size = path.stat().st_size
    if data.size is not None and size != data.size:
        raise IntegrityError(
            f"{path} does not match {MANIFEST_NAME}: {size} bytes instead of {data.size} (an interrupted copy or "
            f"download?); {again}"
        )
    if hash_it and data.sha256:
        actual = sha256_of(path)
        if actual != data.sha256:
            raise IntegrityError(
                f"{path} does not match {MANIFEST_NAME}: sha256 {actual} instead of {data.sha256}; {again}"
            )


def check_support_files(model_dir: Path, files: Sequence[DataFile]) -> None:
    """Raise IntegrityError when one of the configs, tokenizer files or module weights the manifest records is
    missing or differs from its sha256 (`lightembed.manifest.support_files`)."""
    for data in files:
        path = model_dir / data.path
        if not path.is_file():
            raise IntegrityError(f"{path}, which {MANIFEST_NAME} lists, is missing; fetch or export the model again.")
        actual = sha256_of(path)
        if actual != data.sha256:
            raise IntegrityError(
                f"{path} does not match {MANIFEST_NAME}: sha256 {actual} instead of {data.sha256}. A config or "
                "tokenizer file was changed after export, which changes the vectors; fetch or export it again "
                "(verify=False loads it unchecked)."
            )


def check_in_background(
    model_dir: Path, onnx_path: Path, record: FileRecord | None, companion: Path | None = None
) -> Callable[[], FileRecord | None]:
    """Start `check_file` on a thread (hashing overlaps session creation); the returned function waits for it
    and raises what it raised."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["entry"] = check_file(model_dir, onnx_path, record, companion=companion)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="lightembed-verify", daemon=True)
    thread.start()

    def wait() -> FileRecord | None:
        thread.join()
        if "error" in result:
            raise result["error"]
        return result.get("entry")

    return wait

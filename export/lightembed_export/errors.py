"""Errors the exporter reports to its user as one line, with the CLI exit status each one maps to."""

from __future__ import annotations


class ExportError(Exception):
    """Base class: an export that cannot be done or did not pass; `exit_code` is the CLI's status."""

    exit_code: int = 1


class SourceError(ExportError):
    """The model argument is not a usable model: a missing folder, a folder that is no model, an unknown Hub id."""

    exit_code = 2


class OutputError(ExportError):
    """The output folder cannot be written, e.g. it exists and holds something other than a previous export."""

    exit_code = 2


class ArgumentError(ExportError):
    """An option's value cannot be used, e.g. a calibration file that cannot be read or has no text."""

    exit_code = 2


class UnsupportedModelError(ExportError):
    """The checkpoint's architecture (or one of its modules) is one the exporter cannot handle."""

    exit_code = 2

    def __init__(self, message: str, architecture: str | None = None, model_type: str | None = None) -> None:
        super().__init__(message)
        self.architecture = architecture
        self.model_type = model_type


class VerificationError(ExportError):
    """A written ONNX file does not reproduce the torch model within its threshold."""

    exit_code = 1

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = list(failures or [])

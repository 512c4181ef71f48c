"""lightembed-export: turns a sentence-transformers (or transformers) checkpoint into a verified ONNX folder
that the torch-free lightembed runtime, and sentence-transformers' ONNX backend, load."""

from __future__ import annotations

__version__ = "0.1.0"

from lightembed_export.api import export_model  # noqa: E402
from lightembed_export.errors import (  # noqa: E402
    ArgumentError,
    ExportError,
    OutputError,
    SourceError,
    UnsupportedModelError,
    VerificationError,
)

__all__ = [
    "ArgumentError",
    "ExportError",
    "OutputError",
    "SourceError",
    "UnsupportedModelError",
    "VerificationError",
    "__version__",
    "export_model",
]

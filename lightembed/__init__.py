"""lightembed: sentence-transformers' encode() on ONNX Runtime and NumPy, without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["SentenceTransformer", "util", "__version__"]

if TYPE_CHECKING:
    from lightembed import util
    from lightembed.encoder import SentenceTransformer


def __getattr__(name: str) -> Any:
    # Lazy, so `import lightembed` stays cheap for cold starts and the CLI.
    if name == "SentenceTransformer":
        from lightembed.encoder import SentenceTransformer

        return SentenceTransformer
    if name == "util":
        import importlib

        return importlib.import_module("lightembed.util")
    raise AttributeError(f"module 'lightembed' has no attribute {name!r}")

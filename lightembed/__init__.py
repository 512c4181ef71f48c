"""lightembed: sentence-transformers' encode() on ONNX Runtime and NumPy, without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "CrossEncoder",
    "MultiVectorEncoder",
    "NotSupportedError",
    "PrecisionWarning",
    "SentenceTransformer",
    "SimilarityFunction",
    "SparseEncoder",
    "util",
    "__version__",
]

if TYPE_CHECKING:
    from lightembed import util
    from lightembed.compat import PrecisionWarning
    from lightembed.cross_encoder import CrossEncoder
    from lightembed.encoder import SentenceTransformer
    from lightembed.multi_vector_encoder import MultiVectorEncoder
    from lightembed.sparse_encoder import SparseEncoder
    from lightembed.util import SimilarityFunction
    from lightembed.unsupported import NotSupportedError


def __getattr__(name: str) -> Any:
    # Lazy, so `import lightembed` stays cheap for cold starts and the CLI.
    if name == "SentenceTransformer":
        from lightembed.encoder import SentenceTransformer

        return SentenceTransformer
    if name == "CrossEncoder":
        from lightembed.cross_encoder import CrossEncoder

        return CrossEncoder
    if name == "SparseEncoder":
        from lightembed.sparse_encoder import SparseEncoder

        return SparseEncoder
    if name == "MultiVectorEncoder":
        from lightembed.multi_vector_encoder import MultiVectorEncoder

        return MultiVectorEncoder
    if name == "SimilarityFunction":
        from lightembed.util import SimilarityFunction

        return SimilarityFunction
    if name == "NotSupportedError":
        from lightembed.unsupported import NotSupportedError

        return NotSupportedError
    if name == "PrecisionWarning":
        from lightembed.compat import PrecisionWarning

        return PrecisionWarning
    if name == "util":
        import importlib

        return importlib.import_module("lightembed.util")
    raise AttributeError(f"module 'lightembed' has no attribute {name!r}")

"""lightembed: sentence-transformers' encode() on ONNX Runtime and NumPy, without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "BGEM3Model",
    "CrossEncoder",
    "MultiVectorEncoder",
    "NotSupportedError",
    "PrecisionWarning",
    "SentenceTransformer",
    "SimilarityFunction",
    "SparseEncoder",
    "quantize_embeddings",
    "util",
    "__version__",
]

if TYPE_CHECKING:
    from lightembed import util
    from lightembed.bge_m3 import BGEM3Model
    from lightembed.compat import PrecisionWarning
    from lightembed.cross_encoder import CrossEncoder
    from lightembed.encoder import SentenceTransformer
    from lightembed.multi_vector_encoder import MultiVectorEncoder
    from lightembed.sparse_encoder import SparseEncoder
    from lightembed.unsupported import NotSupportedError
    from lightembed.util import SimilarityFunction, quantize_embeddings


# sentence-transformers' top-level names for training, model cards and its own exporters, which lightembed
# deliberately does not provide: each raises an AttributeError saying so (hasattr() stays False).
NOT_PROVIDED = {
    **dict.fromkeys((
        "SentenceTransformerTrainer", "SentenceTransformerTrainingArguments", "CrossEncoderTrainer",
        "CrossEncoderTrainingArguments", "SparseEncoderTrainer", "SparseEncoderTrainingArguments",
        "MultiVectorEncoderTrainer", "MultiVectorEncoderTrainingArguments", "SentencesDataset",
        "ParallelSentencesDataset", "InputExample", "DefaultBatchSampler", "MultiDatasetDefaultBatchSampler",
        "LoggingHandler", "mine_hard_negatives", "resolve_ids",
    ), "training belongs to sentence-transformers; train there, save, and export with `lightembed-export`"),
    **dict.fromkeys((
        "SentenceTransformerModelCardData", "CrossEncoderModelCardData", "SparseEncoderModelCardData",
        "MultiVectorEncoderModelCardData",
    ), "model cards are filled in while training with sentence-transformers; lightembed's save() writes its own"),
    **dict.fromkeys((
        "export_optimized_onnx_model", "export_dynamic_quantized_onnx_model", "export_static_quantized_openvino_model",
    ), "lightembed's exporter does this: `lightembed-export <model> --optimize O3` / `--quantize` (pip install lightembed-export)"),
}  # fmt: skip


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
    if name == "BGEM3Model":
        from lightembed.bge_m3 import BGEM3Model

        return BGEM3Model
    if name == "SimilarityFunction":
        from lightembed.util import SimilarityFunction

        return SimilarityFunction
    if name == "NotSupportedError":
        from lightembed.errors import NotSupportedError

        return NotSupportedError
    if name == "PrecisionWarning":
        from lightembed.compat import PrecisionWarning

        return PrecisionWarning
    if name == "quantize_embeddings":  # sentence-transformers exports it at the top level too
        from lightembed.util import quantize_embeddings

        return quantize_embeddings
    if name == "util":
        import importlib

        return importlib.import_module("lightembed.util")
    if name in NOT_PROVIDED:
        from lightembed.unsupported import TorchOnlyAttributeError

        raise TorchOnlyAttributeError(f"lightembed.{name} is not provided: {NOT_PROVIDED[name]}.")
    raise AttributeError(f"module 'lightembed' has no attribute {name!r}")

"""`lightembed.util.quantization`: sentence-transformers 6's `util.quantization` module, embedding quantization (quantize_embeddings), so that code
importing from sentence-transformers' `util.quantization` keeps working with lightembed in its place. The functions live
in lightembed.util; a name lightembed does not provide raises lightembed.util's refusal, naming why."""

from __future__ import annotations

from lightembed.util import (  # noqa: F401 - re-exported
    __getattr__,  # noqa: F401 - its refusals, by name
    quantize_embeddings,
)

__all__ = ['quantize_embeddings']


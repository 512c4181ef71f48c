"""The fp32 export of a Transformer module with torch.onnx.export, where optimum's exporter cannot run.

optimum-onnx requires transformers < 4.58, and sentence-transformers 6 requires transformers >= 5, so beside
sentence-transformers 6 the exporter traces the transformers model itself (TorchScript exporter, dynamo=False)
with the graph optimum would write: inputs input_ids, attention_mask (and token_type_ids where the model has more
than one token type) with dynamic batch_size and sequence_length axes; output last_hidden_state
(feature-extraction) or logits (text-classification, fill-mask).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION, FILL_MASK, TASK_INFO, TEXT_CLASSIFICATION

DEFAULT_OPSET = 17
"""LayerNormalization is an ONNX operator from opset 17; onnxruntime's transformer optimizer fuses it."""

# The transformers auto class and its model-type mapping for each task.
_AUTO_CLASSES = {
    FEATURE_EXTRACTION: ("AutoModel", "MODEL_MAPPING_NAMES"),
    TEXT_CLASSIFICATION: ("AutoModelForSequenceClassification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
    FILL_MASK: ("AutoModelForMaskedLM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
}
_DUMMY_BATCH, _DUMMY_LENGTH = 2, 11
"""Traced shapes: distinct, so that a size baked into the graph shows up as a wrong dimension, not a silent match."""


def check_exportable(model_type: str, architecture: str, task: str) -> None:
    """UnsupportedModelError unless transformers has a `task` model class for `model_type`."""
    from transformers.models.auto import modeling_auto

    mapping = getattr(modeling_auto, _AUTO_CLASSES[task][1])
    if model_type not in mapping:
        raise UnsupportedModelError(
            f"transformers has no {_AUTO_CLASSES[task][0]} for architecture {architecture} "
            f"(model_type {model_type!r}), so lightembed-export cannot export it for {task}",
            architecture=architecture,
            model_type=model_type,
        )


def input_names(model: Any) -> tuple[str, ...]:
    """The text inputs the exported graph takes, as optimum's configs have them: input_ids, attention_mask;
    token_type_ids when forward() takes them and the config has more than one token type (BERT yes, RoBERTa no);
    position_ids for decoders (the runtime numbers a left-padded text's tokens as it would number them alone)."""
    from lightembed_export.architectures import forward_inputs

    names = forward_inputs(model)
    if int(getattr(model.config, "type_vocab_size", 0) or 0) <= 1:
        names = tuple(name for name in names if name != "token_type_ids")
    if is_decoder(model) and "position_ids" in inspect.signature(model.forward).parameters:
        names = (*names, "position_ids")
    return names


def is_decoder(model: Any) -> bool:
    """Whether transformers has a causal LM and no masked LM for the model's type (Qwen, Mistral, Llama, Gemma3; not
    BERT-style encoders, which have both)."""
    from transformers.models.auto import modeling_auto

    model_type = getattr(model.config, "model_type", "")
    return (
        model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def load_model(model_dir: Path, task: str, model_class: str | None = None, trust_remote_code: bool = False) -> Any:
    """The transformers model to trace, float32 on CPU in eval mode (eager attention: a plain graph of MatMuls and
    Softmax, the pattern onnxruntime's optimizer fuses)."""
    import torch
    import transformers

    cls = getattr(transformers, model_class or _AUTO_CLASSES[task][0])
    kwargs: dict[str, Any] = {"dtype": torch.float32, "trust_remote_code": trust_remote_code}
    try:
        model = cls.from_pretrained(str(model_dir), attn_implementation="eager", **kwargs)
    except (TypeError, ValueError):  # remote code that does not take attn_implementation
        model = cls.from_pretrained(str(model_dir), **kwargs)
    return model.eval()


def dummy_inputs(model: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    """Seeded token ids for the trace; the second row is padded, so the mask's path is the one traced."""
    import torch

    vocab = int(getattr(model.config, "vocab_size", 0) or 100)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, max(4, vocab), (_DUMMY_BATCH, _DUMMY_LENGTH), generator=generator, dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # as lightembed's runtime feeds them
    values = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "position_ids": positions,
    }
    return tuple(values[name] for name in names)


@contextlib.contextmanager
def _masks_without_vmap() -> Iterator[None]:
    """transformers 5 builds attention masks with extra mask functions (Gemma3's bidirectional sliding window) with
    torch.vmap, which the TorchScript tracer cannot follow; its other path broadcasts the same element-wise
    functions over index tensors, which traces. Force that path while tracing (verification checks the result
    against the torch model either way)."""
    try:
        from transformers import masking_utils
    except ImportError:  # transformers 4 has no masking_utils: nothing to do
        yield
        return
    original = getattr(masking_utils, "sdpa_mask", None)
    if original is None or "use_vmap" not in inspect.signature(original).parameters:
        yield
        return

    @functools.wraps(original)
    def broadcast(*args: Any, **kwargs: Any) -> Any:
        kwargs["use_vmap"] = False
        return original(*args, **kwargs)

    masking_utils.sdpa_mask = broadcast
    try:
        yield
    finally:
        masking_utils.sdpa_mask = original


def export(
    model_dir: Path,
    path: Path,
    task: str,
    opset: int | None = None,
    model_class: str | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Trace the transformers checkpoint in `model_dir` for `task` and write it to `path`; returns `path`."""
    import torch

    model = load_model(model_dir, task, model_class, trust_remote_code)
    names = input_names(model)
    output = TASK_INFO[task].output
    axes = {0: "batch_size", 1: "sequence_length"}
    dynamic = {name: axes for name in names}
    dynamic[output] = {0: "batch_size"} if task == TEXT_CLASSIFICATION else axes

    class Traced(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            result = self.inner(**dict(zip(names, inputs, strict=True)), return_dict=True)
            return result[output]

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _masks_without_vmap():
            torch.onnx.export(
                Traced(model).eval(),
                dummy_inputs(model, names),
                str(path),
                input_names=list(names),
                output_names=[output],
                dynamic_axes=dynamic,
                opset_version=opset or DEFAULT_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except torch.onnx.errors.OnnxExporterError as exc:  # e.g. an operator ONNX has no counterpart for
        architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(
            f"torch.onnx.export cannot export architecture {architecture} "
            f"(model_type {model.config.model_type!r}): {reason}",
            architecture=architecture,
            model_type=model.config.model_type,
        ) from None
    return path

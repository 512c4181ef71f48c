"""The torch model, loaded with sentence-transformers (SentenceTransformer, CrossEncoder or SparseEncoder), and the
sentence-transformers folder layout it writes."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION, FILL_MASK, TASK_INFO, TEXT_CLASSIFICATION

# Module classes the lightembed runtime runs after the Transformer, per task (mirrors lightembed.config.load_config,
# lightembed.cross_encoder and lightembed.sparse_encoder.load_splade_config).
RUNTIME_MODULES: tuple[str, ...] = ("Transformer", "Pooling", "Dense", "Normalize")
TASK_MODULES: dict[str, tuple[str, ...]] = {
    FEATURE_EXTRACTION: RUNTIME_MODULES,
    TEXT_CLASSIFICATION: ("Transformer",),
    FILL_MASK: ("Transformer", "MLMTransformer", "SpladePooling"),
}
# The Transformer module's transformer_task sentence-transformers >= 5 sets for each task.
ST_TRANSFORMER_TASKS: dict[str, str] = {
    FEATURE_EXTRACTION: "feature-extraction",
    TEXT_CLASSIFICATION: "sequence-classification",
    FILL_MASK: "fill-mask",
}

# The Transformer's own weights: never copied to the output, which holds the ONNX graph instead.
TRANSFORMER_WEIGHT_PATTERNS: tuple[str, ...] = (
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*-of-*.bin",
    "pytorch_model.bin.index.json",
    "tf_model.h5",
    "flax_model.msgpack",
)
# Files of the source folder worth keeping that sentence-transformers does not save itself.
SOURCE_EXTRAS: tuple[str, ...] = ("README.md", "LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE")


def load_model(path: Path, task: str = FEATURE_EXTRACTION, trust_remote_code: bool = False) -> Any:
    """Load the checkpoint in `path` in float32 on CPU with the sentence-transformers class for `task`.

    feature-extraction: SentenceTransformer (a plain transformers folder gets mean pooling); text-classification:
    CrossEncoder; fill-mask: SparseEncoder (a plain masked-LM folder gets SpladePooling, max and relu).
    """
    import sentence_transformers
    import torch
    import transformers
    from packaging.version import Version

    dtype_key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    model_class = getattr(sentence_transformers, TASK_INFO[task].st_class)
    return model_class(
        str(path), device="cpu", model_kwargs={dtype_key: torch.float32}, trust_remote_code=trust_remote_code
    )


def _first_is_transformer(index: int, name: str) -> bool:
    return (name in ("Transformer", "MLMTransformer")) == (index == 0)


def check_modules(model: Any, task: str = FEATURE_EXTRACTION) -> None:
    """UnsupportedModelError for a module or Transformer setting the lightembed runtime cannot reproduce."""
    names = [type(module).__name__ for module in model]
    allowed = TASK_MODULES[task]
    what = TASK_INFO[task].what
    for index, name in enumerate(names):
        if name not in allowed or not _first_is_transformer(index, name):
            followers = [m for m in allowed if m not in ("Transformer", "MLMTransformer")]
            rest = f" followed by {', '.join(followers)} modules only" if followers else " only"
            raise UnsupportedModelError(
                f"module {index} is {name}; for a {what} lightembed runs a Transformer{rest} "
                f"(modules: {', '.join(names)})",
                architecture=name,
            )
    if task == FILL_MASK and "SpladePooling" not in names:
        raise UnsupportedModelError(
            f"the sparse encoder has no SpladePooling module (modules: {', '.join(names)}); lightembed's "
            "SparseEncoder runs SPLADE models",
            architecture=names[0],
        )
    transformer = model[0]
    transformer_task = getattr(transformer, "transformer_task", None)
    expected = ST_TRANSFORMER_TASKS[task]
    if transformer_task is not None and transformer_task != expected:
        raise UnsupportedModelError(
            f"the Transformer module's task is {transformer_task!r}; a {what} needs {expected!r}",
            architecture=type(transformer.auto_model).__name__,
        )
    modalities = getattr(transformer, "modalities", None)
    if modalities is not None and list(modalities) not in (["text"], [("text",)]):
        raise UnsupportedModelError(
            f"the Transformer module takes {modalities}; lightembed embeds text only",
            architecture=type(transformer.auto_model).__name__,
        )


def save_model(model: Any, folder: Path) -> None:
    """Save the whole model (weights included) in sentence-transformers layout, with safetensors weights."""
    model.save_pretrained(str(folder), create_model_card=False, safe_serialization=True)


def _is_transformer_weight(relative: Path) -> bool:
    return relative.parent == Path(".") and any(
        fnmatch.fnmatch(relative.name, pattern) for pattern in TRANSFORMER_WEIGHT_PATTERNS
    )


def copy_layout(saved: Path, output_dir: Path, source: Path | None = None) -> list[str]:
    """Copy the saved model to `output_dir` without the Transformer's weights; return the copied files.

    The Transformer is saved in the folder's root (sentence-transformers saves a first Transformer there);
    other modules' weights (Dense's model.safetensors) are kept. README/LICENSE files of `source` are added.
    """
    copied: list[str] = []
    for path in sorted(saved.rglob("*")):
        relative = path.relative_to(saved)
        target = output_dir / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)  # keeps parameter-free module folders (2_Normalize)
        elif not _is_transformer_weight(relative):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(relative.as_posix())
    if source is not None:
        for name in SOURCE_EXTRAS:
            if (source / name).is_file() and not (output_dir / name).exists():
                shutil.copy2(source / name, output_dir / name)
                copied.append(name)
    return sorted(copied)

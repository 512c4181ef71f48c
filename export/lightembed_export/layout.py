"""The torch model, loaded with sentence-transformers, and the sentence-transformers folder layout it writes."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError

# Module classes the lightembed runtime runs (mirrors lightembed.config.load_config).
RUNTIME_MODULES: tuple[str, ...] = ("Transformer", "Pooling", "Dense", "Normalize")

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


def load_model(path: Path) -> Any:
    """Load the checkpoint in `path` as a float32 sentence_transformers.SentenceTransformer on CPU.

    A plain transformers folder (no modules.json) gets sentence-transformers' default: mean pooling.
    """
    import torch
    import transformers
    from packaging.version import Version
    from sentence_transformers import SentenceTransformer

    dtype_key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return SentenceTransformer(str(path), device="cpu", model_kwargs={dtype_key: torch.float32})


def check_modules(model: Any) -> None:
    """UnsupportedModelError for a module or Transformer setting the lightembed runtime cannot reproduce."""
    names = [type(module).__name__ for module in model]
    for index, name in enumerate(names):
        if name not in RUNTIME_MODULES or (name == "Transformer") != (index == 0):
            raise UnsupportedModelError(
                f"module {index} is {name}; lightembed runs a Transformer followed by "
                f"{', '.join(RUNTIME_MODULES[1:])} modules only (modules: {', '.join(names)})",
                architecture=name,
            )
    transformer = model[0]
    task = getattr(transformer, "transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise UnsupportedModelError(
            f"the Transformer module's task is {task!r}; lightembed exports feature-extraction models only",
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

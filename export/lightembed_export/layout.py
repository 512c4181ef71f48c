"""The torch model, loaded with sentence-transformers (SentenceTransformer, CrossEncoder or SparseEncoder), and the
sentence-transformers folder layout it writes."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Any

from lightembed_export.errors import SourceError, UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION, FILL_MASK, MULTI_VECTOR, TASK_INFO, TEXT_CLASSIFICATION

# Module classes the lightembed runtime runs after the Transformer, per task (mirrors lightembed.config.load_config,
# lightembed.cross_encoder and lightembed.sparse_encoder.load_splade_config).
RUNTIME_MODULES: tuple[str, ...] = ("Transformer", "Pooling", "Dense", "Normalize")
TASK_MODULES: dict[str, tuple[str, ...]] = {
    FEATURE_EXTRACTION: RUNTIME_MODULES,
    TEXT_CLASSIFICATION: ("Transformer",),
    FILL_MASK: ("Transformer", "MLMTransformer", "SpladePooling"),
    MULTI_VECTOR: ("Transformer", "Dense", "MultiVectorMask", "Normalize"),
}
# The Transformer module's transformer_task sentence-transformers >= 5 sets for each task.
ST_TRANSFORMER_TASKS: dict[str, str] = {
    FEATURE_EXTRACTION: "feature-extraction",
    TEXT_CLASSIFICATION: "sequence-classification",
    FILL_MASK: "fill-mask",
    MULTI_VECTOR: "feature-extraction",
}
# What sentence-transformers 6 modules read and write by default; any other module_input_name is refused.
_DEFAULT_INPUTS = {"Dense": "sentence_embedding", "Normalize": "sentence_embedding"}
_TOKEN_LEVEL = "token_embeddings"

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

    check_module_types(path)
    dtype_key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    st_class = TASK_INFO[task].st_class
    model_class = getattr(sentence_transformers, st_class, None)
    if model_class is None:
        raise UnsupportedModelError(
            f"a {TASK_INFO[task].what} needs sentence-transformers' {st_class}, which sentence-transformers "
            f"{sentence_transformers.__version__} does not have (it is new in 6.0): install lightembed-export beside "
            "sentence-transformers >= 6",
            architecture=st_class,
        )
    try:
        return model_class(
            str(path), device="cpu", model_kwargs={dtype_key: torch.float32}, trust_remote_code=trust_remote_code
        )
    except (TypeError, ImportError, AttributeError) as exc:  # a module config this release cannot build
        raise UnsupportedModelError(
            f"sentence-transformers {sentence_transformers.__version__} cannot load {path}{_saved_by(path)}: "
            f"{type(exc).__name__}: {exc}",
            architecture=st_class,
        ) from None


def _saved_by(path: Path) -> str:
    """' (saved by sentence-transformers X)' from config_sentence_transformers.json, or ''."""
    import json

    try:
        saved = json.loads((path / "config_sentence_transformers.json").read_text(encoding="utf-8"))
        version = saved["__version__"]["sentence_transformers"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f" (saved by sentence-transformers {version})"


def check_module_types(path: Path) -> None:
    """UnsupportedModelError naming the first module in `path`/modules.json whose class the installed
    sentence-transformers cannot import: a folder saved by sentence-transformers 6 (module paths under
    sentence_transformers.base.modules) read beside 5.x, or a module from another package."""
    import json

    import sentence_transformers
    from sentence_transformers.util import import_from_string

    try:
        entries = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    except OSError:
        return  # a plain transformers folder
    except ValueError as exc:
        raise SourceError(f"cannot read {path / 'modules.json'}: {exc}") from None
    for entry in entries if isinstance(entries, list) else []:
        ref = str(entry.get("type", "")) if isinstance(entry, dict) else ""
        module_name, _, class_name = ref.rpartition(".")
        if not module_name.startswith("sentence_transformers."):
            continue  # other packages' modules (pylate.*): sentence-transformers maps or refuses them itself
        try:
            import_from_string(ref)  # what sentence-transformers resolves modules.json's types with
        except ImportError:
            raise UnsupportedModelError(
                f"module {entry.get('idx', '?')} is {ref}, which sentence-transformers "
                f"{sentence_transformers.__version__} does not have{_saved_by(path)}; install lightembed-export "
                "beside the sentence-transformers release that saved the folder",
                architecture=class_name,
            ) from None


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
    for index, module in enumerate(model):
        _check_module_options(index, module, names)
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


def _check_module_options(index: int, module: Any, names: list[str]) -> None:
    """UnsupportedModelError for a module option the runtime does not reproduce: a Dense or Normalize reading
    anything but the sentence embedding or the token embeddings, or writing its result under another name."""
    name = type(module).__name__
    if name not in _DEFAULT_INPUTS:
        return
    read = getattr(module, "module_input_name", None)
    written = getattr(module, "module_output_name", None)
    if read not in (None, _DEFAULT_INPUTS[name], _TOKEN_LEVEL):
        problem = f"module_input_name={read!r}"
    elif written not in (None, read):
        problem = f"module_output_name={written!r} (module_input_name={read!r})"
    else:
        return
    raise UnsupportedModelError(
        f"module {index} is {name} with {problem}; lightembed runs {name} on {_DEFAULT_INPUTS[name]!r} or "
        f"{_TOKEN_LEVEL!r}, in place (modules: {', '.join(names)})",
        architecture=name,
    )


def pooling_follows_transformer(model: Any) -> bool:
    """Whether the module after the Transformer is Pooling, so the pooled output fused into the graph
    (lightembed_export.pooled) pools what the model's Pooling pools: not so when, for example, a token-level
    Normalize sits in between."""
    modules = list(model)
    return len(modules) > 1 and type(modules[1]).__name__ == "Pooling"


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

"""Where the checkpoint comes from: a local folder, or a Hugging Face Hub repo pinned to a commit."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export.errors import SourceError, UnsupportedModelError
from lightembed_export.tasks import FolderFacts

# Files a Hub snapshot does not need: other frameworks' weights and previously exported graphs.
HUB_IGNORE_PATTERNS: tuple[str, ...] = (
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.onnx_data",
    "tf_model.h5",
    "flax_model.msgpack",
    "rust_model.ot",
    "*.mlmodel",
    "coreml/*",
    "*.tflite",
    "*.gguf",
)

# Hub answers that a cached snapshot cannot make up for.
_DEFINITE_HUB_ERRORS = frozenset({"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"})
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# First modules the exporter can export: sentence-transformers' Transformer, the legacy SPLADE MLMTransformer and
# the CLIP module (exported as two towers, lightembed_export.clip).
_TRANSFORMER_CLASSES = ("Transformer", "MLMTransformer", "CLIPModel")
# Why a known first module other than a Transformer is refused, and what to do instead.
_UNSUPPORTED_MODULES = {
    "StaticEmbedding": (
        ". StaticEmbedding (static-retrieval-mrl-en-v1, model2vec's potion models and the like) is a table of token "
        "vectors with no transformer graph to export, and none is needed: lightembed reads the folder as it is, "
        "lightembed.SentenceTransformer(folder) (tokenizer.json + model.safetensors, memory-mapped)"
    ),
}


@dataclass(frozen=True)
class ResolvedSource:
    """A checkpoint on local disk and what it was resolved from."""

    model_id: str
    """The model argument as given: a Hub repo id or a folder path."""
    path: Path
    """The local folder holding the checkpoint (a Hub snapshot for Hub ids)."""
    from_hub: bool
    requested_revision: str | None
    """The revision asked for (branch, tag or commit), None for the default branch or a local folder."""
    revision: str | None
    """The commit hash the files come from (Hub only; None for a local folder)."""


@dataclass(frozen=True)
class ModelLayout:
    """What a checkpoint folder is, read from its JSON files without loading weights."""

    is_sentence_transformer: bool
    """True when the folder has modules.json; False for a plain transformers folder (mean pooling is added)."""
    module_types: tuple[str, ...]
    transformer_dir: Path
    model_type: str | None
    architectures: tuple[str, ...]
    transformer_task: str | None = None
    """sentence_bert_config.json's transformer_task (sentence-transformers >= 5), if set."""
    st_model_type: str | None = None
    """config_sentence_transformers.json's model_type (SentenceTransformer, CrossEncoder, SparseEncoder), if set."""

    @property
    def facts(self) -> FolderFacts:
        """What task detection reads (tasks.detect_task)."""
        names = tuple(t.rsplit(".", 1)[-1] for t in self.module_types)
        return FolderFacts(names, self.transformer_task, self.st_model_type, self.architectures)

    @property
    def architecture(self) -> str:
        """The architecture's name for messages, e.g. 'BertModel' or the model_type if none is listed."""
        if self.architectures:
            return self.architectures[0]
        return self.model_type or "unknown"


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith((".", "/", "~"))
        or "\\" in model
        or model.count("/") > 1
        or model.endswith("/")
        or (os.sep != "/" and os.sep in model)
    )


def resolve_source(
    model: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: bool | str | None = None,
) -> ResolvedSource:
    """Find `model` on disk: an existing folder as is, otherwise a Hub repo id downloaded at `revision`."""
    local = Path(model).expanduser()
    if local.exists():
        if not local.is_dir():
            raise SourceError(f"{model} is a file, not a model folder.")
        if revision is not None:
            raise SourceError(f"--revision applies to Hub repo ids only, but {model} is a local folder.")
        return ResolvedSource(model, local.resolve(), False, None, None)
    if _looks_like_path(model):
        raise SourceError(f"no such model folder: {model}")
    return _download(model, revision, cache_dir, token)


def _download(
    repo_id: str, revision: str | None, cache_dir: str | Path | None, token: bool | str | None
) -> ResolvedSource:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise SourceError(f"{repo_id!r} is neither an existing folder nor a valid Hugging Face Hub repo id.") from None
    what = f"{repo_id}@{revision}" if revision else repo_id
    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision)
        commit = info.sha
        files = [s.rfilename for s in (info.siblings or [])]
        path = snapshot_download(
            repo_id,
            revision=commit or revision,
            cache_dir=cache_dir,
            token=token,
            ignore_patterns=list(HUB_IGNORE_PATTERNS) + _redundant_torch_pickles(files),
        )
    except Exception as exc:  # the Hub client raises many types (HTTP, offline, not found, gated)
        if type(exc).__name__ in _DEFINITE_HUB_ERRORS:
            raise SourceError(
                f"cannot download {what} from the Hugging Face Hub: {type(exc).__name__}: {exc}"
            ) from None
        # Offline or unreachable: a snapshot already in the cache will do.
        try:
            path = snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, token=token, local_files_only=True
            )
        except Exception:
            raise SourceError(
                f"cannot download {what} from the Hugging Face Hub and it is not cached: {type(exc).__name__}: {exc}"
            ) from None
        commit = None
    path = Path(path)
    if commit is None and _COMMIT_RE.match(path.name):
        commit = path.name
    return ResolvedSource(repo_id, path, True, revision, commit)


def _redundant_torch_pickles(files: list[str]) -> list[str]:
    """pytorch_model*.bin files in folders that also hold safetensors weights, which suffice."""
    folders_with_safetensors = {os.path.dirname(f) for f in files if f.endswith(".safetensors")}
    return [
        f
        for f in files
        if os.path.basename(f).startswith("pytorch_model") and os.path.dirname(f) in folders_with_safetensors
    ]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None


def read_layout(path: Path) -> ModelLayout:
    """Describe the checkpoint in `path`; SourceError unless it is a sentence-transformers or transformers folder."""
    modules_file = path / "modules.json"
    if modules_file.is_file():
        entries = _read_json(modules_file)
        if not isinstance(entries, list) or not entries:
            raise SourceError(f"{modules_file} does not list any modules.")
        entries = sorted(entries, key=lambda e: e.get("idx", 0) if isinstance(e, dict) else 0)
        types = tuple(str(e.get("type", "")) for e in entries if isinstance(e, dict))
        transformers = [e for e in entries if _class_name(e) in _TRANSFORMER_CLASSES]
        first = types[0].rsplit(".", 1)[-1] if types else "?"
        if not transformers or first not in _TRANSFORMER_CLASSES:
            raise UnsupportedModelError(
                f"the model's first module is {first!r}; lightembed-export exports models whose first "
                f"module is a sentence-transformers Transformer{_UNSUPPORTED_MODULES.get(first, '')}",
                architecture=first,
            )
        transformer_dir = path / str(transformers[0].get("path", ""))
        is_st = True
    elif (path / "config.json").is_file():
        types = ()
        transformer_dir = path
        is_st = False
    else:
        raise SourceError(
            f"{path} is not a model folder: it has neither modules.json (sentence-transformers) "
            "nor config.json (transformers)."
        )
    config_file = transformer_dir / "config.json"
    if not config_file.is_file():
        raise SourceError(f"the Transformer module folder {transformer_dir} has no config.json.")
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise SourceError(f"{config_file} does not hold a JSON object.")
    architectures = tuple(str(a) for a in (config.get("architectures") or []))
    model_type = config.get("model_type")
    return ModelLayout(
        is_st,
        types,
        transformer_dir,
        str(model_type) if model_type else None,
        architectures,
        transformer_task=_optional_str(transformer_dir / "sentence_bert_config.json", "transformer_task"),
        st_model_type=_optional_str(path / "config_sentence_transformers.json", "model_type"),
    )


def _class_name(entry: Any) -> str:
    return str(entry.get("type", "")).rsplit(".", 1)[-1] if isinstance(entry, dict) else ""


def _optional_str(path: Path, key: str) -> str | None:
    """The string setting `key` of the JSON object in `path`; None if the file, the key or the string is missing."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return str(value) if isinstance(value, str) and value else None

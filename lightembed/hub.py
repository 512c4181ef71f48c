"""Finds a model folder (local, or a Hub snapshot) and the ONNX file in it to run (for a static-embedding folder,
its table of token vectors: lightembed.static)."""

from __future__ import annotations

import re
from pathlib import Path

from lightembed.clip import vision_file_name
from lightembed.config import read_modules, read_static_layout
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.static import STATIC_MODULE, TABLE_FILE, sparse_static_dir

# Everything a runtime needs from a repo except weights: configs, tokenizer files, module folders' configs
# and Dense weights (module folders hold safetensors; the transformer's own weights sit at the root).
_CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*/*.safetensors"]
_DEFAULT_ONNX = ("onnx/model.onnx", "model.onnx", "onnx/text_model.onnx")  # the last: a CLIP text tower
_TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def onnx_candidates(file_name: str | None) -> list[str]:
    """Relative paths to try, in order, for the ONNX file (`file_name` may be bare or include `onnx/`)."""
    if file_name is None:
        return list(_DEFAULT_ONNX)
    file_name = file_name.replace("\\", "/").lstrip("/")
    if "/" in file_name:
        return [file_name]
    return [file_name, f"onnx/{file_name}"]


def find_onnx_file(folder: Path, file_name: str | None, source: str | None = None) -> Path:
    """The ONNX file to load from `folder` (a static-embedding folder's table), or an error that says what to do
    instead."""
    source = source or str(folder)
    if file_name is None:
        static = read_static_layout(folder)
        if static is not None:
            return static.table
        weights = sparse_static_dir(read_modules(folder))
        if weights is not None:  # a sparse table of token weights
            return weights / TABLE_FILE
    for candidate in onnx_candidates(file_name):
        if (folder / candidate).is_file():
            return folder / candidate
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.onnx"))
    if file_name is not None:
        raise FileNotFoundError(
            f"ONNX file {file_name!r} not found in {source}. ONNX files there: {present or 'none'}."
        )
    if present:
        raise FileNotFoundError(
            f"{source} has no onnx/model.onnx or model.onnx; choose one of {present} with file_name=..."
        )
    if any((folder / name).is_file() for name in _TORCH_WEIGHTS):
        raise FileNotFoundError(
            f"{source} holds torch weights but no ONNX file. Export it first:\n"
            f"    pip install ./export   # or: pip install lightembed-export\n"
            f"    lightembed-export {source} -o <output_folder>\n"
            "then load <output_folder>."
        )
    raise FileNotFoundError(
        f"{source} is not a model folder: it has no ONNX file, no modules.json, config.json or tokenizer.json."
    )


def resolve(
    model_name_or_path: str | Path,
    *,
    file_name: str | None = None,
    revision: str | None = None,
    cache_folder: str | None = None,
    local_files_only: bool = False,
    token: bool | str | None = None,
) -> tuple[Path, Path]:
    """Return (model folder, ONNX file) for a local folder or a Hub repo id.

    A Hub repo is fetched with huggingface_hub into the standard cache (or `cache_folder`), restricted to
    configs, tokenizer files and the one ONNX file chosen; HF_HUB_OFFLINE=1 and `local_files_only` read the
    cache only. Torch weights are never downloaded.
    """
    if not isinstance(model_name_or_path, (str, Path)):
        raise LightembedTypeError(f"model_name_or_path must be a str or Path, got {type(model_name_or_path).__name__}.")
    path = Path(model_name_or_path).expanduser()
    if path.is_dir():
        return path, find_onnx_file(path, file_name)
    if path.exists():
        raise LightembedValueError(f"{path} is a file, not a model folder.")
    name = str(model_name_or_path)
    if not _REPO_ID.match(name):
        raise FileNotFoundError(f"No model folder at {name!r}, and it is not a valid Hugging Face Hub repo id.")
    return _from_hub(name, file_name, revision, cache_folder, local_files_only, token)


def _from_hub(
    repo_id: str,
    file_name: str | None,
    revision: str | None,
    cache_folder: str | None,
    local_files_only: bool,
    token: bool | str | None,
) -> tuple[Path, Path]:
    try:
        from huggingface_hub import snapshot_download  # imported only when a Hub id must be resolved
    except ImportError:  # slim installs (deploy/prune.txt) leave it out: they serve local folders only
        raise FileNotFoundError(
            f"No model folder at {repo_id!r}, and resolving it as a Hugging Face Hub repo id needs huggingface_hub,"
            " which this install lacks: pass a local model folder, or `pip install huggingface-hub`."
        ) from None

    candidates = onnx_candidates(file_name)
    groups = [candidates] if file_name is not None else [[c] for c in candidates]
    folder: Path | None = None
    last_error: Exception | None = None
    for group in groups:
        files = group + [v for v in map(vision_file_name, group) if v]  # a CLIP text tower brings its vision tower
        patterns = _CONFIG_PATTERNS + [p for c in files for p in (c, f"{c}_data", f"{c}.data")]
        try:
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    cache_dir=cache_folder,
                    local_files_only=local_files_only,
                    token=token,
                    allow_patterns=patterns,
                )
            )
        except Exception as exc:  # huggingface_hub raises many types: offline, not found, auth, network
            last_error = exc
            folder = _pinned_snapshot(repo_id, revision, cache_folder)
            if folder is None or not any((folder / c).is_file() for c in group):
                folder = None
                continue
        if any((folder / c).is_file() for c in group):
            break
        table = _static_table(folder)
        if table is not None:  # a static-embedding repo: its table is the model file, fetched only now
            snapshot_download(repo_id, revision=revision, cache_dir=cache_folder, local_files_only=local_files_only,
                              token=token, allow_patterns=[table])  # fmt: skip
            break
    if folder is None:
        raise FileNotFoundError(
            f"Could not find {repo_id!r} as a local folder or on the Hugging Face Hub"
            f"{' (revision ' + revision + ')' if revision else ''}: {type(last_error).__name__}: {last_error}"
        ) from None
    return folder, find_onnx_file(folder, file_name, source=repo_id)


def _pinned_snapshot(repo_id: str, revision: str | None, cache_folder: str | None) -> Path | None:
    """The cached snapshot of a full commit hash (immutable, so safe to use as it is), or None. huggingface_hub >= 1
    offline refuses a commit it has no file listing ("tree") cached for, as in caches filled by older releases."""
    if not revision or not re.fullmatch(r"[0-9a-f]{40}", revision):
        return None
    from huggingface_hub import constants

    cache = Path(cache_folder) if cache_folder else Path(constants.HF_HUB_CACHE)
    folder = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    return folder if folder.is_dir() else None


def _static_table(folder: Path) -> str | None:
    """The table a static-embedding snapshot still lacks (its path in the repo), or None for any other folder."""
    modules = read_modules(folder)  # a model2vec repo without modules.json looks like any transformers repo here
    if not modules or modules[0][0] != STATIC_MODULE:
        return None
    table = modules[0][1] / TABLE_FILE
    return None if table.is_file() else table.relative_to(folder).as_posix()

"""save()/save_pretrained()/push_to_hub(): a loaded model written back as a folder that lightembed and
sentence-transformers' ONNX backend both load.

The folder holds the ONNX file in use as `onnx/model.onnx` (the name both load by default; lightembed.json records
the name it had), every other file of the model folder except the other ONNX files (configs, tokenizer files,
module folders, the model card), the configs rewritten with the current settings, and lightembed.json with the
file's record: its bytes are copied unchanged, so the recorded sha256 still holds and is checked again here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightembed import manifest as manifests
from lightembed.errors import LightembedValueError
from lightembed.graphs.integrity import check_file, sha256_of
from lightembed.manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from lightembed.base import BaseModel

SAVED_ONNX = "onnx/model.onnx"
_SKIP_DIRS = (".cache", ".git", ".huggingface")


def _is_onnx_or_data(path: Path, onnx_names: set[str]) -> bool:
    if path.suffix == ".onnx":
        return True
    # external data beside an ONNX file: model.onnx_data, model.onnx.data, model_O4.onnx_data ...
    return any(path.name.startswith(name) and path.name != name for name in onnx_names)


EXTERNAL_DATA_SUFFIXES = ("_data", ".data")
"""The names an ONNX file's external data takes beside it: model.onnx_data (onnx's, the exporter's and optimum's
convention) or model.onnx.data (onnxruntime's optimizer). Anything else starting with the file's name is not its
data: the pre-optimized copy `model.onnx.cpu` and its `model.onnx.cpu.data` (tied to the machine that wrote them,
and 87 MB for MiniLM) are not carried over."""


def _external_data_files(onnx_path: Path) -> list[Path]:
    """The external data files beside `onnx_path` that belong to it (EXTERNAL_DATA_SUFFIXES)."""
    candidates = (onnx_path.with_name(onnx_path.name + suffix) for suffix in EXTERNAL_DATA_SUFFIXES)
    return [path for path in candidates if path.is_file()]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_model(
    model: BaseModel, path: str | Path, *, model_name: str | None = None, create_model_card: bool = True
) -> Path:
    """Write `model` to the folder `path` (created if needed; files of the same name are replaced)."""
    from lightembed import __version__

    source = Path(model.model_dir).resolve()
    target = Path(path).expanduser()
    resolved = target.resolve()
    if resolved == source or source in resolved.parents:
        raise LightembedValueError(
            f"save() writes a new folder; {target} is the model's own folder {source} (or inside it). "
            "Save to another folder."
        )
    if target.exists() and not target.is_dir():
        raise LightembedValueError(f"{target} exists and is not a folder.")
    onnx_in_use = Path(model.onnx_path)
    try:
        used_rel = onnx_in_use.resolve().relative_to(source).as_posix()
    except ValueError:
        used_rel = onnx_in_use.name
    onnx_names = {p.name for p in source.rglob("*.onnx")}

    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.rglob("*")):
        rel = file.relative_to(source)
        if not file.is_file() or rel.parts[0] in _SKIP_DIRS or rel.as_posix() == MANIFEST_NAME:
            continue
        if _is_onnx_or_data(file, onnx_names):
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / rel)
    saved_onnx = target / SAVED_ONNX
    saved_onnx.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_in_use, saved_onnx)
    for data in _external_data_files(onnx_in_use):  # they keep their names: the graph refers to them by name
        shutil.copyfile(data, saved_onnx.parent / data.name)

    st_config_path = target / "config_sentence_transformers.json"
    st_config = _read_json(st_config_path)
    st_config.update(model._model_config())
    if st_config.get("truncate_dim", 0) is None:  # sentence-transformers writes it only when set
        del st_config["truncate_dim"]
    _write_json(st_config_path, st_config)

    transformer_dir = Path(getattr(getattr(model, "config", None), "transformer_dir", source))
    try:
        transformer_rel = transformer_dir.resolve().relative_to(source)
    except ValueError:
        transformer_rel = Path()
    sbert_path = target / transformer_rel / "sentence_bert_config.json"
    sbert = _read_json(sbert_path)
    sbert["max_seq_length"] = model.max_seq_length
    _write_json(sbert_path, sbert)
    model._save_extra(target)

    found = model.manifest or manifests.read(source, strict=False)
    manifest = dict(found.data) if found is not None else {}
    record = found.files.get(used_rel) if found is not None else None
    entry = dict(record.raw) if record is not None else None
    if entry is None or not entry.get("sha256"):
        entry = dict(entry or {}, sha256=sha256_of(saved_onnx), size=saved_onnx.stat().st_size)
    entry["path"] = SAVED_ONNX
    entry.pop("cpu_preoptimized", None)  # its copy names its data file after the old name; not carried over
    if isinstance(entry.get("external_data"), list):  # the data files now sit beside onnx/model.onnx
        entry["external_data"] = [
            dict(d, path=f"onnx/{Path(str(d.get('path'))).name}") for d in entry["external_data"] if isinstance(d, dict)
        ]
    if used_rel != SAVED_ONNX:
        entry["saved_from"] = used_rel
    manifest = {k: v for k, v in manifest.items() if k != "files"} or {"format_version": 1}
    manifest["files"] = [entry]
    manifest["saved"] = {
        "by": f"lightembed {__version__}",
        "class": model.model_type,
        "from_file": used_rel,
        "precision": model.precision,
        "settings": {"max_seq_length": model.max_seq_length, **model._model_config()},
    }
    if manifests.SUPPORT_FILES in manifest:  # save() rewrote configs: record them as they are now
        manifest[manifests.SUPPORT_FILES] = manifests.support_files(target)
    manifests.write(target, manifest)
    saved = manifests.read(target)
    # the copy has the recorded bytes (an interrupted copy is caught here)
    check_file(target, saved_onnx, saved.record(saved_onnx) if saved is not None else None)

    readme = target / "README.md"
    if create_model_card and not readme.is_file():
        readme.write_text(_model_card(model, model_name or target.name), encoding="utf-8")
    return target


def _model_card(model: BaseModel, name: str) -> str:
    cls = model.model_type
    return (
        "---\ntags:\n- onnx\n- lightembed\n- sentence-transformers\nlibrary_name: sentence-transformers\n---\n\n"
        f"# {name}\n\nAn ONNX {cls} model ({model.precision}, `{SAVED_ONNX}`), saved by lightembed.\n\n"
        f"```python\nfrom lightembed import {cls}  # or: from sentence_transformers import {cls}\n\n"
        f'model = {cls}("{name}")  # sentence-transformers: {cls}("{name}", backend="onnx")\n```\n'
    )


def push_to_hub(
    model: BaseModel,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    local_model_path: str | None = None,
    exist_ok: bool = False,
    replace_model_card: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload `model` (saved to a temporary folder, or the folder `local_model_path`) to the Hub repo `repo_id`
    with huggingface_hub, creating the repo; the commit URL (the pull request's with `create_pr`). An existing
    README.md in the repo is kept unless `replace_model_card`. huggingface_hub's HF_ENDPOINT picks the Hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=exist_ok or create_pr).repo_id
    if revision is not None:
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    if commit_message is None:
        commit_message = f"Add new {model.model_type} model with an onnx backend"
    keep_card = not replace_model_card and api.file_exists(repo_id, "README.md", revision=revision)
    with tempfile.TemporaryDirectory(prefix="lightembed-push-") as tmp:
        folder = local_model_path or str(save_model(model, Path(tmp) / "model", model_name=repo_id))
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            ignore_patterns=["README.md"] if keep_card else None,
        )
    return info.pr_url if create_pr and info.pr_url else info.commit_url

"""Exporting a sentence-transformers `Router` model (lightembed.router): each route whose first module is a
Transformer is exported as the model it is alone (the route's modules, then the Router's followers), verified
against sentence-transformers like any model, into that module's folder, a complete model folder the runtime loads
that route from (lightembed.router.route_folder); every other module folder (a
StaticEmbedding or SparseStaticEmbedding, which the runtime reads as it is, a Pooling, a SpladePooling, a Normalize)
and the Router's configs are copied.
The output loads in lightembed as the Router it was."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from lightembed.router import read_router, route_view

TRANSFORMERS = ("Transformer", "MLMTransformer")  # MLMTransformer: sentence-transformers 5's SPLADE transformer
_TOP_FILES = ("modules.json", "router_config.json", "config_sentence_transformers.json", "README.md")


def is_router_folder(model: str | Path) -> bool:
    """Whether `model` is a local folder whose first module is a Router."""
    path = Path(model).expanduser()
    return path.is_dir() and read_router(path) is not None


def export_router(
    model: str | Path, output_dir: str | Path, export: Callable[..., dict[str, Any]], overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Export the Router folder `model` to `output_dir`: `export` (lightembed_export.export_model) runs on each
    Transformer route with `options`; returns {"model": ..., "routes": {route: report}, "files": every file's
    record, its route named}."""
    source = Path(model).expanduser().resolve()
    output = Path(output_dir).expanduser().resolve()
    config = read_router(source)
    assert config is not None  # is_router_folder said so
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty; pass overwrite=True to replace it.")
    output.mkdir(parents=True, exist_ok=True)
    reports: dict[str, dict[str, Any]] = {}
    for route, modules in config.routes.items():
        first_kind, first_dir, _ = modules[0]
        if first_kind in TRANSFORMERS:
            view = route_view(config, route, None)
            try:
                reports[route] = export(view, output / first_dir.name, overwrite=True, **options)
            finally:
                shutil.rmtree(view, ignore_errors=True)
        else:
            shutil.copytree(first_dir, output / first_dir.name, dirs_exist_ok=True)
        for _, path, _ in modules[1:]:
            shutil.copytree(path, output / path.name, dirs_exist_ok=True)
    for entry in config.after:
        module = source / entry.get("path", "")
        if entry.get("path") and module.is_dir():
            shutil.copytree(module, output / entry["path"], dirs_exist_ok=True)
    for name in _TOP_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, output / name)
    files = [{**record, "route": route} for route, report in reports.items() for record in report["files"]]
    return {"model": {"architecture": "Router", "routes": sorted(config.routes)}, "routes": reports, "files": files}

"""sentence-transformers' `Router`: a first module that sends each input to one of several module lists (routes) by
its task, e.g. queries to a static table and documents to a transformer.

A Router folder holds modules.json (the Router at the root, then the modules after it, e.g. Normalize),
router_config.json (`structure`: route -> its module folders; `parameters`: `default_route` and
`route_mappings`, whose keys are Python tuples `(task, modality)` written as strings), and one folder per route
module. Each route runs as a model of its own: a route view is a folder of links that lays the route out as a plain
sentence-transformers folder (its first module's files at the root, the rest of its modules and the Router's
followers as module folders), so every kind of first module a folder may have (an exported Transformer, a
StaticEmbedding) loads as it does alone.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from lightembed.config import read_modules
from lightembed.errors import LightembedValueError
from lightembed.jsonfiles import read_json

ROUTER_MODULE = "Router"
CONFIG_FILE = "router_config.json"
TEXT = "text"
# The module folder's own description of a model, replaced in a view by the route's.
_REPLACED = ("modules.json", "config_sentence_transformers.json", "README.md")

ModuleEntry = tuple[str, Path, str]
T = TypeVar("T")


@dataclass(frozen=True)
class RouterConfig:
    """A Router folder's routes (route -> its modules), the modules after it, and how a task picks a route."""

    folder: Path
    routes: dict[str, tuple[ModuleEntry, ...]]
    after: tuple[dict[str, Any], ...]
    """modules.json entries after the Router, as written (their paths relative to the folder)."""
    default_route: str | None
    mappings: dict[tuple[Any, Any], str] = field(default_factory=dict)

    def resolve(self, task: str | None) -> str:
        """The route a text input with `task` takes, by sentence-transformers' rules for the text modality:
        (task, text), (task, any), (any, text), (any, any) in route_mappings, then a route named as the task, then
        one named "text", then (no task given) the default route."""
        for key in ((task, TEXT), (task, None), (None, TEXT), (None, None)):
            if key in self.mappings:
                return self.mappings[key]
        if task and task in self.routes:
            return task
        if TEXT in self.routes:
            return TEXT
        if task is not None:
            raise LightembedValueError(f"No route for task {task!r}: this Router's routes are {sorted(self.routes)}.")
        if self.default_route is None:
            raise LightembedValueError(f"This Router has no default route; pass task= one of {sorted(self.routes)}.")
        return self.default_route


def read_router(folder: Path) -> RouterConfig | None:
    """The Router of `folder` (its first module), or None when the folder has none."""
    modules = read_modules(folder)
    if not modules or modules[0][0] != ROUTER_MODULE:
        return None
    router_dir = modules[0][1]
    path = router_dir / CONFIG_FILE
    config = read_json(path)
    structure, types = config.get("structure"), config.get("types") or {}
    if not isinstance(structure, dict) or not structure:
        raise LightembedValueError(f"{path} lists no routes ('structure'), so the Router routes nowhere.")
    routes = {
        route: tuple((str(types.get(name, "")).rsplit(".", 1)[-1], router_dir / name, str(types.get(name)))
                     for name in names)
        for route, names in structure.items()
    }  # fmt: skip
    parameters = config.get("parameters") or {}
    mappings = {}
    for key, route in (parameters.get("route_mappings") or {}).items():
        try:
            task, modality = ast.literal_eval(key)
        except (ValueError, SyntaxError, TypeError):
            raise LightembedValueError(f"{path}: route_mappings key {key!r} is not a (task, modality) pair.") from None
        mappings[(task, tuple(sorted(modality)) if isinstance(modality, (list, tuple)) else modality)] = route
    for route in (*mappings.values(), parameters.get("default_route")):
        if route is not None and route not in routes:
            raise LightembedValueError(f"{path} sends inputs to route {route!r}, which it does not have ({sorted(routes)}).")
    default = parameters.get("default_route")
    if default is None and parameters.get("allow_empty_key", True):
        default = next(iter(routes))
    entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    after = tuple(sorted((e for e in entries if e.get("idx", 0) != 0), key=lambda e: e.get("idx", 0)))
    return RouterConfig(folder, routes, after, default, mappings)


def route_folder(config: RouterConfig, route: str, owner: object) -> Path:
    """The folder `route` loads from as a model of its own: its first module's folder when that is a complete model
    already (lightembed-export writes each exported route so, with its own modules.json and lightembed.json), else
    a route view (`route_view`)."""
    first = config.routes[route][0][1] if config.routes[route] else None
    if first is not None and (first / "modules.json").is_file():
        return first
    return route_view(config, route, owner)


def split_routes(config: RouterConfig, owner: object, load: Callable[[Path], T]) -> tuple[Path, dict[str, T]]:
    """(the folder the default route loads from, every other route loaded by `load(folder)`): a Router model is its
    default route, holding the others as models of their own (`model.routes`)."""
    views = {route: route_folder(config, route, owner) for route in config.routes}
    default = config.resolve(None)  # the route a text without a task takes (an error if none)
    return views[default], {route: load(view) for route, view in views.items() if route != default}


def pool_refusal(config: RouterConfig) -> Exception:
    """The error a Router model gives a multi-process pool, which sends one model."""
    from lightembed.unsupported import NotSupportedError

    return NotSupportedError(
        "A Router model runs several models, and a pool sends one: start the pool on the route you encode "
        f"with ({sorted(config.routes)}; `model.routes[name]`, the default route is the model itself)."
    )


def route_view(config: RouterConfig, route: str, owner: object | None) -> Path:
    """A folder of links laying `route` out as a plain sentence-transformers folder (removed once `owner` is gone;
    with no owner, the caller removes it):
    the route's first module's files at its root, its other modules and the Router's followers as module folders,
    modules.json listing them."""
    modules = config.routes[route]
    if not modules:
        raise LightembedValueError(f"Route {route!r} of {config.folder} has no modules.")
    view = Path(tempfile.mkdtemp(prefix=f"lightembed-route-{route}-"))
    if owner is not None:
        weakref.finalize(owner, shutil.rmtree, view, ignore_errors=True)
    first_kind, first_dir, first_type = modules[0]
    for item in first_dir.iterdir():
        if item.name not in _REPLACED:
            _link(item, view / item.name)
    entries = [{"idx": 0, "name": "0", "path": "", "type": first_type}]
    for kind, path, type_name in modules[1:]:
        if not (view / path.name).exists():  # an exported first module may hold a copy of it already
            _link(path, view / path.name)
        entries.append({"idx": len(entries), "name": str(len(entries)), "path": path.name, "type": type_name})
    for entry in config.after:
        target = config.folder / entry.get("path", "")
        name = f"after_{entry.get('path') or len(entries)}"
        if target.exists() and not (view / name).exists():
            _link(target, view / name)
        entries.append({**entry, "idx": len(entries), "name": str(len(entries)), "path": name})
    (view / "modules.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    settings = config.folder / "config_sentence_transformers.json"
    if settings.is_file():
        _link(settings, view / settings.name)
    return view


def _link(source: Path, target: Path) -> None:
    """`target` standing for `source`: a link to a file; for a folder, a real folder of links, so the module
    folders of a view lie inside it (lightembed.config refuses module paths that lead outside a model folder)."""
    if not source.is_dir():
        os.symlink(source, target)
        return
    target.mkdir()
    for item in source.iterdir():
        _link(item, target / item.name)

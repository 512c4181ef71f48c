"""Facts about written ONNX files (hash, size, opset, IR version) and the IR-version clamp that keeps them loadable."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

MAX_IR_VERSION = 9
"""Highest ONNX IR version written: onnxruntime reads IR 9 since 1.15, so lightembed's oldest supported
onnxruntime (1.17) loads every file. Newer onnx releases stamp higher versions (1.23: IR 14) on models they build."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _used_domains(model: Any) -> set[str]:
    """Operator domains the graph, its subgraphs and its functions use ('ai.onnx' for the default domain)."""
    from onnx import AttributeProto

    used: set[str] = set()

    def walk(nodes: Any) -> None:
        for node in nodes:
            used.add(node.domain or "ai.onnx")
            for attribute in node.attribute:
                if attribute.type == AttributeProto.GRAPH:
                    walk(attribute.g.node)
                elif attribute.type == AttributeProto.GRAPHS:
                    for graph in attribute.graphs:
                        walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        used.add(function.domain or "ai.onnx")
        walk(function.node)
    return used


def make_loadable(path: Path, max_ir: int = MAX_IR_VERSION) -> dict[str, Any]:
    """Rewrite the file so older onnxruntime releases load it (see make_model_loadable); return what changed."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    changes = make_model_loadable(model, max_ir)
    if changes:
        onnx.save(model, str(path))
    return changes


def make_model_loadable(model: Any, max_ir: int = MAX_IR_VERSION) -> dict[str, Any]:
    """Change a loaded ModelProto so older onnxruntime releases load it; return what changed ({} if nothing).

    Two things block them: an IR version above `max_ir` (lowered to `max_ir`, or the lowest the opsets allow), and
    opset imports of domains no node uses that newer onnxruntime stamps on the models it optimizes (e.g. ai.onnx.ml
    opset 5, which onnxruntime 1.17 rejects); those imports are dropped.
    """
    import onnx

    changes: dict[str, Any] = {}
    used = _used_domains(model)
    unused = [entry for entry in model.opset_import if (entry.domain or "ai.onnx") not in used | {"ai.onnx"}]
    if unused:
        changes["dropped_unused_opsets"] = {entry.domain: int(entry.version) for entry in unused}
        kept = [entry for entry in model.opset_import if entry not in unused]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    before = int(model.ir_version)
    if before > max_ir:
        try:
            needed = int(onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
        except Exception:  # an opset newer than this onnx release knows: keep the IR version as written
            needed = before
        after = max(max_ir, needed)
        if after < before:
            model.ir_version = after
            changes["ir_version_written"] = before
    return changes


EXTERNAL_DATA_SUFFIX = "_data"
"""An ONNX file's external data file is named after it: model.onnx -> model.onnx_data (optimum's and the Hub's
convention; lightembed's Hub download fetches it with the file)."""


def save_model_file(model: Any, path: Path, external_data: bool = False) -> None:
    """Write a ModelProto to `path`; with `external_data`, every tensor over 1 KiB goes to `path`_data instead (the
    layout files over 2 GB need, which protobuf cannot hold). Tensors already external keep their file."""
    import onnx

    if external_data and not external_locations(model):
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + EXTERNAL_DATA_SUFFIX,
            size_threshold=1024,
        )
    else:
        onnx.save(model, str(path))


def external_locations(model: Any) -> list[str]:
    """Names of the files holding the model's external tensor data (large models), relative to the model file."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    names: set[str] = set()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            names.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(names)


def onnx_file_info(path: Path, root: Path, model: Any = None) -> dict[str, Any]:
    """Path relative to `root` (POSIX), sha256, size, default-domain opset, other domains' opsets and IR version.
    `model` is the file's ModelProto if already loaded."""
    import onnx

    if model is None:
        model = onnx.load(str(path), load_external_data=False)
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    info: dict[str, Any] = {
        "path": path.relative_to(root).as_posix(),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "opset": opsets.get("ai.onnx"),
        "ir_version": int(model.ir_version),
        "domains": {d: v for d, v in sorted(opsets.items()) if d != "ai.onnx"},
    }
    data = [path.parent / name for name in external_locations(model)]
    if data:
        info["external_data"] = [
            {"path": p.relative_to(root).as_posix(), "sha256": sha256_file(p), "size": p.stat().st_size} for p in data
        ]
    return info

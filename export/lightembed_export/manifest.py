"""lightembed.json: what was exported, from which source and with which tools, and how each file verified."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from lightembed import manifest as runtime_manifest
from lightembed.manifest import FORMAT_VERSION, MANIFEST_NAME  # noqa: F401 - the runtime's schema, re-exported
PACKAGES: tuple[str, ...] = (
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "sentence-transformers",
    "lightembed",
)


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None if not installed), plus Python's.

    onnxruntime's is the imported module's own: the onnxruntime and onnxruntime-gpu wheels share that module, and
    the distribution metadata names whichever is installed, not the one that runs (e.g. one earlier on sys.path).
    """
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if "onnxruntime" in packages:
        try:
            import onnxruntime

            versions["onnxruntime"] = onnxruntime.__version__
            versions["onnxruntime_providers"] = ",".join(onnxruntime.get_available_providers())
        except ImportError:
            pass
    versions["python"] = platform.python_version()
    return versions


def manifest_head(source: Any) -> dict[str, Any]:
    """The first keys of every lightembed.json: format, the source (a resolved `source.Source`), the exporter and
    the package versions it ran with."""
    from lightembed_export import __version__

    return {
        "format_version": FORMAT_VERSION,
        "source": {
            "id": source.model_id,
            "hub": source.from_hub,
            "revision": source.revision,
            "requested_revision": source.requested_revision,
        },
        "exporter": {"name": "lightembed-export", "version": __version__},
        "versions": package_versions(),
    }


def probes_digest(probes: Sequence[Any]) -> str:
    """SHA-256 of the probe texts or pairs (JSON-encoded), to tell which probe set the metrics were measured on."""
    return hashlib.sha256(json.dumps(list(probes), ensure_ascii=False).encode("utf-8")).hexdigest()


def write_manifest(output_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest` as OUT/lightembed.json through the runtime's one (atomic) writer, with the sha256 of every
    config, tokenizer file and module weight file the runtime reads (`support_files`)."""
    manifest[runtime_manifest.SUPPORT_FILES] = runtime_manifest.support_files(output_dir)
    return runtime_manifest.write(output_dir, manifest)


def read_manifest(output_dir: Path) -> dict[str, Any]:
    """The lightembed.json of an export folder."""
    return json.loads((output_dir / MANIFEST_NAME).read_text(encoding="utf-8"))

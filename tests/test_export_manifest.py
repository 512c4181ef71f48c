"""lightembed.json's versions name what ran, not what pip's metadata says."""

from __future__ import annotations

from importlib import metadata

import onnxruntime
import pytest

pytest.importorskip("lightembed_export")
from lightembed_export import manifest  # noqa: E402


def test_onnxruntime_version_is_the_imported_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. onnxruntime-gpu earlier on sys.path than an installed CPU onnxruntime whose metadata pip still reports
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "0.0.shadowed" if name == "onnxruntime" else real(name))
    versions = manifest.package_versions(("onnxruntime", "numpy"))
    assert versions["onnxruntime"] == onnxruntime.__version__
    assert versions["onnxruntime_providers"] == ",".join(onnxruntime.get_available_providers())
    assert versions["numpy"] == real("numpy")

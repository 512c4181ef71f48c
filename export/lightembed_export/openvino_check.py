"""The OpenVINO measurement the runtime's automatic backend choice relies on: each fp32 embedding file run by
lightembed's `backend="openvino"` (bfloat16 on AMX CPUs, OpenVINO's default there) against the torch reference
on the probes, recorded as the file's `openvino` block in lightembed.json.

Only where the `openvino` package is installed at export time; a file without the block is never chosen
automatically (the runtime keeps onnxruntime), whatever the CPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from lightembed_export.tasks import FEATURE_EXTRACTION



def applies(info: dict[str, Any], task: str) -> bool:
    """Whether `info` (a file's manifest entry) gets an OpenVINO measurement: fp32 embedding files, and the int8
    file made for OpenVINO (the `weights` recipe)."""
    from lightembed_export.quantize import WEIGHTS

    optimization = info.get("optimization") or {}
    quantization = info.get("quantization") or {}
    return (
        task == FEATURE_EXTRACTION
        and (not quantization or quantization.get("target") == WEIGHTS)
        and not optimization.get("fp16")
        and importlib.util.find_spec("openvino") is not None
    )


def measure(model_dir: Path, file_name: str, reference: np.ndarray, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `file_name` on OpenVINO with its default precision for this CPU; the record for lightembed.json. It
    passes at the bar `backend=None` will hold it to (lightembed.openvino_backend.auto_bar of the file's entry)."""
    from lightembed import SentenceTransformer
    from lightembed.openvino_backend import auto_bar
    from lightembed_export.verify import BATCH_SIZE, PROBES, compare

    record: dict[str, Any] = {"openvino": importlib.metadata.version("openvino")}
    try:
        model = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, backend="openvino", verify=False)
        candidate = np.asarray(model.encode(list(PROBES), batch_size=BATCH_SIZE), dtype=np.float32)
    except Exception as exc:  # an op OpenVINO cannot run: recorded, and the runtime keeps onnxruntime
        return {**record, "inference_precision": None, "metrics": None, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
    metrics = compare(reference, candidate)
    record.update(
        inference_precision=model._graph.inference_precision,
        metrics=metrics,
        passed=bool(metrics["min_cosine"] >= auto_bar(info)),
        error=None,
    )
    return record

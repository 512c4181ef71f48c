"""The OpenVINO measurement the runtime's automatic backend choice relies on: each fp32 embedding file (and the
int8 `weights` file, made for OpenVINO) run by lightembed's `backend="openvino"` (bfloat16 on AMX CPUs, OpenVINO's
default there) against the torch reference on the probes, and against the fp32 file on onnxruntime on the
built-in calibration texts (56, long passages among them: the 17 probes alone once passed all-mpnet-base-v2 at
0.99992 where 500 real texts reached 0.99955), recorded as the file's `openvino` block in lightembed.json.

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
    """Run `file_name` on OpenVINO with its default precision for this CPU, on the probes (against torch's
    `reference`) and on the built-in calibration texts (against the same file on onnxruntime); the record for
    lightembed.json. It passes at the bars `backend=None` holds it to (lightembed.graphs.policy.choose_backend)."""
    from lightembed import SentenceTransformer
    from lightembed.graphs.policy import auto_bar, texts_bar
    from lightembed_export.calibration import DEFAULT_TEXTS
    from lightembed_export.verify import BATCH_SIZE, PROBES, compare

    record: dict[str, Any] = {"openvino": importlib.metadata.version("openvino")}
    try:
        model = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, backend="openvino", verify=False)
        candidate = np.asarray(model.encode(list(PROBES), batch_size=BATCH_SIZE), dtype=np.float32)
        texts = list(DEFAULT_TEXTS)
        on_openvino = np.asarray(model.encode(texts, batch_size=BATCH_SIZE), dtype=np.float32)
    except Exception as exc:  # an op OpenVINO cannot run: recorded, and the runtime keeps onnxruntime
        return {**record, "inference_precision": None, "metrics": None, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
    fp32_file = (Path(file_name).parent / "model.onnx").as_posix()  # the exporter's fp32 file, equal to torch
    fp32 = SentenceTransformer(str(model_dir), device="cpu", file_name=fp32_file, backend="onnx", verify=False)
    on_fp32 = np.asarray(fp32.encode(texts, batch_size=BATCH_SIZE), dtype=np.float32)
    metrics = compare(reference, candidate)
    texts_check: dict[str, Any] = {
        "against": f"{fp32_file} on onnxruntime",
        "texts": len(texts),
        "source": "the exporter's built-in calibration set (sentences and long passages)",
        "min_cosine": compare(on_fp32, on_openvino)["min_cosine"],
    }
    if (info or {}).get("quantization"):  # an int8 file is held to what it gives on onnxruntime
        own = SentenceTransformer(str(model_dir), device="cpu", file_name=file_name, backend="onnx", verify=False)
        on_onnxruntime = np.asarray(own.encode(texts, batch_size=BATCH_SIZE), dtype=np.float32)
        texts_check["onnxruntime_min_cosine"] = compare(on_fp32, on_onnxruntime)["min_cosine"]
    record.update(
        inference_precision=model._graph.inference_precision,
        metrics=metrics,
        texts_check=texts_check,
        passed=bool(metrics["min_cosine"] >= auto_bar(info) and texts_check["min_cosine"] >= texts_bar(texts_check)),
        error=None,
    )
    return record

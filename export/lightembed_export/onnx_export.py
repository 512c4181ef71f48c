"""The fp32 ONNX export of the Transformer module with optimum, for the model's task (feature-extraction,
text-classification or fill-mask)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION

TASK = FEATURE_EXTRACTION
ONNX_SUBDIR = "onnx"
FP32_FILE_NAME = "model.onnx"


def check_exportable(model_type: str | None, architecture: str, task: str = TASK) -> None:
    """UnsupportedModelError unless optimum's ONNX exporter handles `model_type` for `task`."""
    from optimum.exporters.onnx import main_export  # noqa: F401 - importing registers the ONNX configs
    from optimum.exporters.tasks import TasksManager

    if not model_type:
        raise UnsupportedModelError(
            f"cannot export {architecture}: its config.json has no model_type", architecture=architecture
        )
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except KeyError:
        raise UnsupportedModelError(
            f"optimum cannot export architecture {architecture} (model_type {model_type!r}) to ONNX",
            architecture=architecture,
            model_type=model_type,
        ) from None
    if task not in tasks:
        raise UnsupportedModelError(
            f"optimum cannot export architecture {architecture} (model_type {model_type!r}) for {task}; "
            f"it supports {', '.join(sorted(tasks))}",
            architecture=architecture,
            model_type=model_type,
        )


def export_transformer(model_dir: Path, onnx_dir: Path, opset: int | None = None, task: str = TASK) -> Path:
    """Export the transformers checkpoint in `model_dir` to `onnx_dir/model.onnx` with optimum's `task`.

    Outputs: feature-extraction last_hidden_state (batch, seq, hidden); text-classification logits
    (batch, num_labels); fill-mask logits (batch, seq, vocab), the decoder tied to the word embeddings as in torch.
    """
    from optimum.exporters.onnx import main_export

    onnx_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        main_export(
            str(model_dir),
            output=tmp,
            task=task,
            opset=opset,
            device="cpu",
            do_validation=False,  # verify.py checks every file end to end against sentence-transformers
            local_files_only=True,
            library_name="transformers",
        )
        written = sorted(Path(tmp).glob(FP32_FILE_NAME + "*"))  # model.onnx and, past 2 GB, model.onnx_data
        if not any(p.name == FP32_FILE_NAME for p in written):
            raise RuntimeError(
                f"optimum wrote no {FP32_FILE_NAME} (found {sorted(p.name for p in Path(tmp).iterdir())})"
            )
        for path in written:
            shutil.move(str(path), onnx_dir / path.name)
    return onnx_dir / FP32_FILE_NAME

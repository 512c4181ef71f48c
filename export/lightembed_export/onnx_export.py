"""The fp32 ONNX export of the Transformer module for the model's task (feature-extraction, text-classification or
fill-mask): with optimum's exporter where it is installed (`pip install "lightembed-export[optimum]"`, which needs
transformers < 4.58), otherwise with torch.onnx.export (lightembed_export.torch_export)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION

TASK = FEATURE_EXTRACTION
ONNX_SUBDIR = "onnx"
FP32_FILE_NAME = "model.onnx"


def check_exportable(
    model_type: str | None,
    architecture: str,
    task: str = TASK,
    model_dir: Path | None = None,
    trust_remote_code: bool = False,
) -> None:
    """UnsupportedModelError unless the exporter in use (optimum's, or transformers' model classes for
    torch.onnx.export) handles `model_type` for `task` (or, with `trust_remote_code`, the checkpoint in `model_dir`
    brings its own modeling code) and lightembed-export does not refuse the architecture
    (architectures.check_supported)."""
    from lightembed_export import architectures

    if model_dir is not None:
        architectures.check_supported(model_dir, architecture, model_type, task, trust_remote_code)
        if trust_remote_code and architectures.needs_remote_code(architectures.read_config(model_dir)):
            return  # exported with architectures.onnx_config, not optimum's registry
    if not model_type:
        raise UnsupportedModelError(
            f"cannot export {architecture}: its config.json has no model_type", architecture=architecture
        )
    if not optimum_available():
        from lightembed_export import torch_export

        torch_export.check_exportable(model_type, architecture, task)
        return
    from optimum.exporters.onnx import main_export  # noqa: F401 - importing registers the ONNX configs
    from optimum.exporters.tasks import TasksManager

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


def optimum_available() -> bool:
    """Whether optimum's ONNX exporter imports here (the `optimum` extra, on transformers < 4.58)."""
    import importlib

    try:
        importlib.import_module("optimum.exporters.onnx")
    except Exception:  # ImportError, or optimum-onnx failing against a transformers it does not support
        return False
    return True


def exporter_name() -> str:
    """The tool that writes the fp32 file here, for messages: optimum or torch.onnx.export."""
    return "optimum" if optimum_available() else "torch.onnx.export"


def export_transformer(
    model_dir: Path, onnx_dir: Path, opset: int | None = None, task: str = TASK, trust_remote_code: bool = False
) -> Path:
    """Export the transformers checkpoint in `model_dir` to `onnx_dir/model.onnx` for `task`, with optimum where
    it is installed, otherwise torch.onnx.export.

    Outputs: feature-extraction last_hidden_state (batch, seq, hidden); text-classification logits
    (batch, num_labels); fill-mask logits (batch, seq, vocab), the decoder tied to the word embeddings as in torch.
    T5-family encoders and remote-code models go through architectures.plan_export's own text-encoder config.
    """
    from lightembed_export import architectures

    plan = architectures.plan_export(model_dir, task, trust_remote_code)
    onnx_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lightembed-export-") as tmp:
        if not optimum_available():
            from lightembed_export import torch_export

            torch_export.export(
                model_dir,
                Path(tmp) / FP32_FILE_NAME,
                task,
                opset=opset,
                model_class=plan.model_class if plan.custom else None,
                trust_remote_code=trust_remote_code,
            )
        elif plan.custom:
            from optimum.exporters.onnx import onnx_export_from_model

            model = architectures.load_for_export(model_dir, plan)
            onnx_export_from_model(
                model,
                tmp,
                task=task,
                opset=opset,
                device="cpu",
                do_validation=False,
                custom_onnx_configs={"model": architectures.onnx_config(model, plan, task)},
            )
        else:
            from optimum.exporters.onnx import main_export

            main_export(
                str(model_dir),
                output=tmp,
                task=task,
                opset=opset,
                device="cpu",
                do_validation=False,  # verify.py checks every file end to end against sentence-transformers
                local_files_only=True,
                library_name="transformers",
                trust_remote_code=trust_remote_code,
            )
        written = sorted(Path(tmp).glob(FP32_FILE_NAME + "*"))  # model.onnx and, past 2 GB, model.onnx_data
        if not any(p.name == FP32_FILE_NAME for p in written):
            raise RuntimeError(
                f"the exporter wrote no {FP32_FILE_NAME} (found {sorted(p.name for p in Path(tmp).iterdir())})"
            )
        for path in written:
            shutil.move(str(path), onnx_dir / path.name)
    return onnx_dir / FP32_FILE_NAME

"""sentence-transformers' own `backend="onnx"` on an exported folder, for the tests that check it loads the files.

That backend needs optimum, which cannot be installed beside sentence-transformers 6 (optimum-onnx requires
transformers < 4.58). Where optimum is missing, the model is loaded on torch from the export's source folder and its
Transformer's model is replaced by the exported ONNX file, run with onnxruntime: what the backend does (it puts an
optimum ORTModel there), so the tokenizer, the feeds by input name, the output names and every module after the
Transformer are sentence-transformers' own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class _OnnxModel:
    """Stands in for the transformers model: called with the tokenizer's features, returns the graph's outputs."""

    def __init__(self, path: Path, config: Any) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.config = config

    def __call__(self, **features: Any) -> Any:
        import torch
        from transformers.utils import ModelOutput

        feeds = {name: features[name].cpu().numpy() for name in self.inputs}
        values = self.session.run(self.outputs, feeds)
        return ModelOutput({name: torch.from_numpy(value) for name, value in zip(self.outputs, values, strict=True)})

    forward = __call__


def onnx_backed(cls: Any, src: Path, out: Path, file_name: str = "onnx/model.onnx") -> Any:
    """`cls` (sentence-transformers' SentenceTransformer or CrossEncoder) running `out`/`file_name`: with
    backend="onnx" where optimum is installed, otherwise as described above."""
    from lightembed_export.onnx_export import optimum_available

    if optimum_available():
        return cls(str(out), backend="onnx", model_kwargs={"provider": "CPUExecutionProvider", "file_name": file_name})
    return _swapped(cls(str(src), device="cpu"), out / file_name)


def _swapped(model: Any, onnx_file: Path) -> Any:
    transformer = model[0]
    replacement = _OnnxModel(onnx_file, transformer.auto_model.config)
    attribute = "model" if isinstance(getattr(type(transformer), "auto_model", None), property) else "auto_model"
    object.__setattr__(transformer, attribute, replacement)  # not an nn.Module: bypass the submodule registry
    return model


def saved_onnx_backed(cls: Any, src: Path, saved: Path, scratch: Path, file_name: str = "onnx/model.onnx") -> Any:
    """`cls` loading the folder `saved` (its configs and settings, as lightembed's save() wrote them) and running
    its ONNX file: backend="onnx" where optimum is installed; otherwise from a copy of `saved` given `src`'s torch
    weights (save() writes none), its Transformer's model replaced by the ONNX file as in `onnx_backed`."""
    import shutil

    from lightembed_export.onnx_export import optimum_available

    if optimum_available():
        return cls(str(saved), backend="onnx", device="cpu", model_kwargs={"file_name": file_name})
    shutil.copytree(saved, scratch)
    for weights in ("model.safetensors", "pytorch_model.bin"):
        if (src / weights).is_file():
            shutil.copyfile(src / weights, scratch / weights)
    return _swapped(cls(str(scratch), device="cpu"), saved / file_name)

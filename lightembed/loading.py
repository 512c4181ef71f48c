"""Loading shared by every model class: find the folder and ONNX file, open the session, build the tokenizer."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lightembed import session as sessions
from lightembed.hub import resolve

# model_kwargs keys with a meaning for an ONNX model; others (torch_dtype, attn_implementation ...) only mean
# something to torch/transformers and are ignored with a warning.
ONNX_MODEL_KWARGS = ("file_name", "provider", "providers", "subfolder", "export")


@dataclass
class Loaded:
    """A resolved model folder with its ONNX graph ready to run."""

    model_dir: Path
    onnx_path: Path
    graph: sessions.OnnxGraph
    providers: list[Any]

    @property
    def device(self) -> str:
        return "cuda" if sessions.CUDA in self.graph.session.get_providers() else "cpu"


def load(
    model_name_or_path: str | Path,
    *,
    device: str | None = None,
    file_name: str | None = None,
    revision: str | None = None,
    cache_folder: str | None = None,
    local_files_only: bool = False,
    token: bool | str | None = None,
    providers: Sequence[Any] | None = None,
    threads: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    backend: str = "onnx",
    preferred_outputs: Sequence[str] = (),
) -> Loaded:
    """Resolve `model_name_or_path` (folder or Hub id), pick the ONNX file and create its session."""
    if backend != "onnx":
        raise ValueError(f"lightembed runs ONNX models only: backend must be 'onnx', got {backend!r}.")
    model_kwargs = dict(model_kwargs or {})
    ignored = sorted(set(model_kwargs) - set(ONNX_MODEL_KWARGS))
    if ignored:
        warnings.warn(f"model_kwargs {ignored} have no meaning for an ONNX model and are ignored.", stacklevel=3)
    file_name = file_name or model_kwargs.get("file_name")
    if model_kwargs.get("subfolder") and file_name and "/" not in file_name:
        file_name = f"{model_kwargs['subfolder']}/{file_name}"
    if providers is None:
        providers = model_kwargs.get("providers") or (
            [model_kwargs["provider"]] if model_kwargs.get("provider") else None
        )
    model_dir, onnx_path = resolve(
        model_name_or_path,
        file_name=file_name,
        revision=revision,
        cache_folder=cache_folder,
        local_files_only=local_files_only,
        token=token,
    )
    chosen = sessions.resolve_providers(device, providers)
    graph = sessions.OnnxGraph(sessions.create_session(onnx_path, chosen, threads), preferred_outputs)
    return Loaded(model_dir, onnx_path, graph, chosen)


def default_batch_tokens(device: str) -> int:
    """Padded tokens per batch by default. On CPU, 2048 bounds the activations of a batch of long documents
    (peak RSS on a 5,000-text mixed corpus: ~390 MiB with it, ~790 MiB without; see benchmarks/RESULTS.md)."""
    return 32768 if device == "cuda" else 2048


def check_device(requested: str | None, loaded_on: str, cls_name: str) -> None:
    """encode()/predict() take a device for compatibility; a different one than the model's is an error."""
    if requested is not None and str(requested).split(":")[0] != loaded_on:
        raise ValueError(
            f"This model runs on {loaded_on!r}; to use {requested!r}, load it with {cls_name}(..., device={requested!r})."
        )

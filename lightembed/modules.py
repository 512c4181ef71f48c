"""The sentence-transformers modules that run after pooling: Dense and Normalize, in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightembed import activations
from lightembed.safetensors_io import load_safetensors


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), as torch's F.normalize does."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(x.dtype, copy=False)


class Dense:
    """A linear layer with an activation, loaded from a sentence-transformers Dense folder."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, activation_name: str | None) -> None:
        self.weight_t = np.ascontiguousarray(weight.T, dtype=np.float32)
        self.bias = None if bias is None else bias.astype(np.float32)
        self.activation_name = activation_name
        self._activation = activations.from_config(activation_name, "the Dense module's config.json")

    @property
    def out_features(self) -> int:
        return self.weight_t.shape[1]

    @classmethod
    def from_dir(cls, folder: Path) -> "Dense":
        from lightembed.jsonfiles import read_json

        config_path = folder / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"Dense module folder {folder} has no config.json.")
        config = read_json(config_path)
        weights_path = folder / "model.safetensors"
        if not weights_path.is_file():
            if (folder / "pytorch_model.bin").is_file():
                raise ValueError(
                    f"Dense weights in {folder} are a torch pickle (pytorch_model.bin), which lightembed cannot "
                    "read without torch; re-export the model with `lightembed-export`, which writes safetensors."
                )
            raise FileNotFoundError(f"Dense module folder {folder} has no model.safetensors.")
        tensors = load_safetensors(weights_path)
        weight = tensors.get("linear.weight")
        if weight is None:
            raise ValueError(f"{weights_path} has no 'linear.weight' tensor (found {sorted(tensors)}).")
        bias = tensors.get("linear.bias") if config.get("bias", True) else None
        return cls(weight, bias, config.get("activation_function"))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        if self.bias is not None:
            y += self.bias
        return self._activation(y)


class Normalize:
    """Scales each embedding to unit length."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x)

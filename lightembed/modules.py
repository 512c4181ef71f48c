"""The sentence-transformers modules around pooling: Dense and Normalize, in NumPy.

sentence-transformers 6 passes one dict of features (token_embeddings, attention_mask, sentence_embedding)
through its modules; each Dense/Normalize reads `module_input_name` and writes `module_output_name`. These classes
keep those names (`input_name`, `output_name`) and `run_modules` applies a list of them to such a dict, so a
Normalize on token embeddings before Pooling, or a projection of the token embeddings, runs where 6.x runs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightembed import activations
from lightembed.errors import LightembedValueError
from lightembed.safetensors_io import load_safetensors


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), as torch's F.normalize does."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(x.dtype, copy=False)


SENTENCE = "sentence_embedding"
TOKENS = "token_embeddings"
FEATURE_NAMES = (TOKENS, SENTENCE)
"""The features lightembed's pipeline holds; a module reading or writing any other name is refused."""


class Dense:
    """A linear layer with an activation, loaded from a sentence-transformers Dense folder.

    `use_residual` (sentence-transformers 6) adds the input back to the output: as is when the widths match,
    through the separate bias-free `residual` projection when they differ.
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        activation_name: str | None,
        *,
        use_residual: bool = False,
        residual_weight: np.ndarray | None = None,
        input_name: str = SENTENCE,
        output_name: str | None = None,
    ) -> None:
        self.weight_t = np.ascontiguousarray(weight.T, dtype=np.float32)
        self.bias = None if bias is None else bias.astype(np.float32)
        self.activation_name = activation_name
        self._activation = activations.from_config(activation_name, "the Dense module's config.json")
        self.use_residual = bool(use_residual)
        self.residual_t = None if residual_weight is None else np.ascontiguousarray(residual_weight.T, np.float32)
        if self.use_residual and self.residual_t is None and self.weight_t.shape[0] != self.weight_t.shape[1]:
            raise LightembedValueError(
                f"Dense use_residual=True maps {self.weight_t.shape[0]} to {self.weight_t.shape[1]} features and "
                "needs the 'residual.weight' projection, which its weights lack."
            )
        self.input_name = input_name
        self.output_name = output_name or input_name

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
                raise LightembedValueError(
                    f"Dense weights in {folder} are a torch pickle (pytorch_model.bin), which lightembed cannot "
                    "read without torch; re-export the model with `lightembed-export`, which writes safetensors."
                )
            raise FileNotFoundError(f"Dense module folder {folder} has no model.safetensors.")
        tensors = load_safetensors(weights_path)
        weight = tensors.get("linear.weight")
        if weight is None:
            raise LightembedValueError(f"{weights_path} has no 'linear.weight' tensor (found {sorted(tensors)}).")
        bias = tensors.get("linear.bias") if config.get("bias", True) else None
        use_residual = config.get("use_residual", False)
        if not isinstance(use_residual, bool):
            raise LightembedValueError(f"use_residual in {config_path} must be true or false, got {use_residual!r}.")
        input_name, output_name = feature_names(config, config_path, SENTENCE)
        return cls(
            weight,
            bias,
            config.get("activation_function"),
            use_residual=use_residual,
            residual_weight=tensors.get("residual.weight") if use_residual else None,
            input_name=input_name,
            output_name=output_name,
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        if self.bias is not None:
            y += self.bias
        y = self._activation(y)
        if self.use_residual:
            y = y + (x if self.residual_t is None else x @ self.residual_t)
        return y


class Normalize:
    """Scales each embedding (of `input_name`, written to `output_name`) to unit length."""

    def __init__(self, input_name: str = SENTENCE, output_name: str | None = None) -> None:
        self.input_name = input_name
        self.output_name = output_name or input_name

    @classmethod
    def from_dir(cls, folder: Path) -> "Normalize":
        """The module from its folder; a missing folder or config (sentence-transformers < 6) is the default."""
        from lightembed.jsonfiles import read_json

        config_path = folder / "config.json"
        return cls(*feature_names(read_json(config_path), config_path, SENTENCE))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x)


class LayerNorm:
    """sentence-transformers' LayerNorm module: torch's LayerNorm (eps 1e-5) over the sentence embedding."""

    input_name = output_name = SENTENCE

    def __init__(self, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> None:
        self.weight, self.bias, self.eps = weight.astype(np.float32), bias.astype(np.float32), eps

    @classmethod
    def from_dir(cls, folder: Path) -> "LayerNorm":
        path = folder / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"LayerNorm module folder {folder} has no model.safetensors.")
        tensors = load_safetensors(path)
        if "norm.weight" not in tensors or "norm.bias" not in tensors:
            raise LightembedValueError(f"{path} needs 'norm.weight' and 'norm.bias' tensors (found {sorted(tensors)}).")
        return cls(tensors["norm.weight"], tensors["norm.bias"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=-1, keepdims=True)
        var = x64.var(axis=-1, keepdims=True)
        return ((x64 - mean) / np.sqrt(var + self.eps) * self.weight + self.bias).astype(np.float32)


def feature_names(config: dict, config_path: Path, default: str) -> tuple[str, str]:
    """(module_input_name, module_output_name) of a module config; a name lightembed does not hold is refused."""
    input_name = config.get("module_input_name") or default
    output_name = config.get("module_output_name") or input_name
    for key, name in (("module_input_name", input_name), ("module_output_name", output_name)):
        if name not in FEATURE_NAMES:
            raise LightembedValueError(
                f"{key}={name!r} in {config_path} is not supported by lightembed: its modules read and write "
                f"{FEATURE_NAMES} only."
            )
    return input_name, output_name


def run_modules(modules: list, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Apply `modules` in order to `features`, each reading its input name and writing its output name. A module
    whose input is absent is skipped: the load-time check (lightembed.config) proved the full pipeline provides
    it, so it is absent only where the caller needs just the other feature (a fused pooling output)."""
    for module in modules:
        x = features.get(module.input_name)
        if x is not None:
            features[module.output_name] = module(x)
    return features

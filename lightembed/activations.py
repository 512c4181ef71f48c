"""One registry of NumPy activation functions, named as torch and sentence-transformers store them.

Dense modules (`activation_function` in their config) and CrossEncoder heads (`activation_fn`) both look
their activation up here, so a name resolves to the same NumPy code wherever it appears. torch is never
imported: torch modules and functions that users pass are recognised by their dotted name.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from lightembed.errors import LightembedTypeError, LightembedValueError

__all__ = ["Activation", "GELU", "Identity", "ReLU", "SiLU", "Sigmoid", "Softmax", "Tanh", "as_activation"]


class Activation:
    """A NumPy activation applied elementwise (or over the last axis); `torch_name` is what configs store."""

    torch_name = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Identity(Activation):
    torch_name = "torch.nn.modules.linear.Identity"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x


class Sigmoid(Activation):
    """1 / (1 + exp(-x)), computed in float64 so it neither overflows nor loses tiny probabilities."""

    torch_name = "torch.nn.modules.activation.Sigmoid"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-x64))).astype(np.float32)


class Tanh(Activation):
    torch_name = "torch.nn.modules.activation.Tanh"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


class ReLU(Activation):
    torch_name = "torch.nn.modules.activation.ReLU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


class Softmax(Activation):
    """Softmax over the last axis (torch.nn.Softmax() with its implicit dim picks axis 1 for 2-D logits)."""

    torch_name = "torch.nn.modules.activation.Softmax"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return softmax(x)


# Numerical Recipes' Chebyshev fit of erfc, highest power first.
_ERFC_COEFFS = (
    0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
    -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
)  # fmt: skip


def _erfc(z: np.ndarray) -> np.ndarray:
    """erfc for float64 arrays with relative error below 1.2e-7 everywhere, one float32 rounding: vectorized,
    where math.erf would be one Python call per element."""
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = np.zeros_like(t)
    for c in _ERFC_COEFFS:
        poly = poly * t + c
    ans = t * np.exp(-a * a + poly)
    return np.where(z >= 0, ans, 2.0 - ans)


class GELU(Activation):
    """x * Phi(x) with the exact (erf) form torch's nn.GELU() uses by default."""

    torch_name = "torch.nn.modules.activation.GELU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        # Phi(x) = erfc(-x / sqrt 2) / 2 keeps full relative precision for large negative x.
        return (0.5 * x64 * _erfc(-x64 / np.sqrt(2.0))).astype(np.asarray(x).dtype, copy=False)


class SiLU(Activation):
    torch_name = "torch.nn.modules.activation.SiLU"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            return (x64 / (1.0 + np.exp(-x64))).astype(np.asarray(x).dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax in float64 along `axis`, returned as float32."""
    x64 = np.asarray(x, dtype=np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


_CLASSES: tuple[type[Activation], ...] = (Identity, Sigmoid, Tanh, ReLU, Softmax, GELU, SiLU)
_BY_NAME: dict[str, type[Activation]] = {}
for _cls in _CLASSES:
    _BY_NAME[_cls.torch_name] = _cls
    _BY_NAME[f"torch.nn.{_cls.__name__}"] = _cls
    _BY_NAME[_cls.__name__] = _cls
    _BY_NAME[_cls.__name__.lower()] = _cls
# torch functions (not modules) that people pass as activation_fn
_BY_NAME.update(
    {
        "torch.sigmoid": Sigmoid,
        "torch.tanh": Tanh,
        "torch.relu": ReLU,
        "torch.softmax": Softmax,
        "torch.nn.functional.sigmoid": Sigmoid,
        "torch.nn.functional.tanh": Tanh,
        "torch.nn.functional.relu": ReLU,
        "torch.nn.functional.softmax": Softmax,
        "torch.nn.functional.gelu": GELU,
        "torch.nn.functional.silu": SiLU,
    }
)


def supported_names() -> list[str]:
    """The torch names this registry maps to NumPy."""
    return sorted(c.torch_name for c in _CLASSES)


def by_name(name: str | None) -> Activation | None:
    """The activation stored under a config name: a full torch path or a bare class name; None if unknown."""
    if name is None:
        return Identity()
    cls = _BY_NAME.get(name)
    if cls is None and name.startswith("torch."):
        cls = _BY_NAME.get(name.rsplit(".", 1)[-1])
    return cls() if cls is not None else None


def from_config(name: str | None, where: str) -> Activation:
    """The activation a config file names; ValueError naming `where` when lightembed has no NumPy version."""
    found = by_name(name)
    if found is None:
        raise LightembedValueError(f"Unsupported activation function {name!r} in {where}; supported: {supported_names()}.")
    return found


def from_trusted_path(path: str, trust_remote_code: bool) -> Activation | None:
    """A CrossEncoder config's activation path: None (with sentence-transformers' warning) for an untrusted
    non-torch path, ValueError for a path with no NumPy version."""
    found = by_name(path)
    if found is not None:
        return found
    if not path.startswith("torch.") and not trust_remote_code:
        import logging  # only for this warning: importing it at module level costs cold start

        logging.getLogger(__name__).warning(
            "Activation function path %r is not trusted, using the default activation function instead. "
            "Load the CrossEncoder with trust_remote_code=True to allow custom activation functions.",
            path,
        )
        return None
    raise LightembedValueError(
        f"The model's config names the activation function {path!r}, which lightembed has no NumPy version of "
        f"(it has {supported_names()}). Pass activation_fn=<a callable on NumPy arrays> to CrossEncoder(...) or "
        "predict(...)."
    )


def _fullname(obj: Any) -> str:
    """Dotted name of a class or function, or of an instance's class."""
    if not (hasattr(obj, "__qualname__") and hasattr(obj, "__module__")):
        obj = type(obj)
    return f"{obj.__module__ or ''}.{obj.__qualname__}".lstrip(".")


def as_activation(fn: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Turn what a user passes as activation_fn into a callable on NumPy arrays.

    Accepts a NumPy callable, a dotted torch name ("torch.nn.Sigmoid"), or a torch module/function instance
    (`torch.nn.Sigmoid()`, `torch.sigmoid`): those are recognised by name and replaced by NumPy versions, so
    torch is never called.
    """
    if isinstance(fn, Activation):
        return fn
    if isinstance(fn, str):
        resolved = from_trusted_path(fn, trust_remote_code=True)
        if resolved is None:  # pragma: no cover - trusted paths never come back None
            raise LightembedValueError(f"Unknown activation function {fn!r}.")
        return resolved
    if not callable(fn):
        raise LightembedTypeError(f"activation_fn must be callable, got {type(fn).__name__}.")
    name = _fullname(fn)
    if name.split(".")[0] == "torch":
        found = by_name(name) or by_name(f"torch.nn.{type(fn).__name__}")
        if found is None:
            raise LightembedValueError(
                f"activation_fn {name} is a torch function lightembed cannot run without torch; pass a callable on "
                "NumPy arrays instead (e.g. lightembed.activations.Sigmoid())."
            )
        return found
    return fn

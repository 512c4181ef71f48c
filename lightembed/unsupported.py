"""The sentence-transformers calls lightembed deliberately does not answer (training, evaluation, torch-only
objects): each raises one clear error saying so and what to do instead."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from lightembed.errors import NotSupportedError

TRAIN_WITH_ST = (
    "lightembed runs exported models; it does not train or evaluate them. Train and evaluate with "
    "sentence-transformers (pip install sentence-transformers), save the model, then export it with "
    "`lightembed-export <saved_folder> -o <out>` (pip install lightembed-export) and load <out> with lightembed."
)


class TorchOnlyAttributeError(NotSupportedError, AttributeError):
    """A torch object sentence-transformers exposes that an ONNX model does not have (an AttributeError too, so
    `hasattr`/`getattr(..., default)` keep working)."""


def refuse(name: str, why: str) -> NoReturn:
    raise NotSupportedError(f"{name}: {why}")


def refusal(name: str, why: str = TRAIN_WITH_ST) -> Callable[..., NoReturn]:
    """A method that accepts any arguments and raises NotSupportedError naming `name` and `why`."""

    def method(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotSupportedError(f"{type(self).__name__}.{name}() is not supported: {why}")

    method.__name__ = name
    method.__doc__ = f"Not supported by lightembed (raises NotSupportedError): {why}"
    method.__lightembed_refusal__ = True  # type: ignore[attr-defined]
    return method


def torch_only(name: str, why: str) -> property:
    """A property that raises TorchOnlyAttributeError naming `name` and `why`."""

    def getter(self: Any) -> NoReturn:
        raise TorchOnlyAttributeError(f"{type(self).__name__}.{name} is not available: {why}")

    getter.__lightembed_refusal__ = True  # type: ignore[attr-defined]
    return property(getter, doc=f"Not available in lightembed (raises TorchOnlyAttributeError): {why}")

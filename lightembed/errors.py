"""The one root of every error lightembed raises: `except LightembedError` catches them all, while each also keeps
the built-in type it had (`except ValueError` still works)."""

from __future__ import annotations


class LightembedError(Exception):
    """Base of every error the runtime raises on purpose."""


class LightembedValueError(LightembedError, ValueError):
    """A value (an argument, an input, a file's content) that lightembed cannot use; the message names it."""


class LightembedTypeError(LightembedError, TypeError):
    """An argument of the wrong type; the message names the argument and what it takes."""


class LightembedRuntimeError(LightembedError, RuntimeError):
    """Something went wrong in lightembed's own machinery (a worker, a batcher, a job's journal); the message says
    what and what to do."""


class ModelFileError(LightembedValueError):
    """A model folder or one of its files cannot be loaded as it is (unreadable, wrong shape, not this class)."""


class IntegrityError(ModelFileError):
    """The ONNX file is not the one the manifest describes, or the manifest says it failed its check."""


class NonFiniteOutput(ModelFileError):
    """A graph returned NaN or infinity: damaged weights, or an overflow in its precision; never a vector."""


class NotSupportedError(LightembedError, NotImplementedError):
    """A sentence-transformers call lightembed deliberately does not answer; the message says what to do instead."""


class PoolError(LightembedError, RuntimeError):
    """A pool worker died or could not start; the message names the worker."""


def kind(exc: BaseException) -> str:
    """The name an error is reported by: for a lightembed error the built-in type it also is (ValueError,
    TypeError, ...), since that is what callers catch; else its class name."""
    if isinstance(exc, LightembedError):
        for base in type(exc).__mro__:
            if base.__module__ == "builtins" and base is not Exception:
                return base.__name__
    return type(exc).__name__

"""A context that hides the libraries' warnings and log chatter during an export, so each step prints one line."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

_NOISY_LOGGERS = (
    "transformers",
    "optimum",
    "sentence_transformers",
    "onnxruntime",
    "onnxscript",
    "torch",
    "huggingface_hub",
    "root",
)
_NOISY_MODULES = r"(torch|transformers|optimum|onnxruntime|onnx|onnxscript|sentence_transformers|huggingface_hub)(\.|$)"


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Silence library warnings and logs below ERROR (TracerWarnings, deprecations, ORT's C++ log) while inside."""
    if not enabled:
        yield
        return
    _configure_library_loggers()  # first configuration resets their levels, so do it before saving them
    saved_levels: dict[str, int] = {}
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        saved_levels[name] = logger.level
        logger.setLevel(logging.ERROR)
    tf_verbosity = _set_transformers_verbosity(logging.ERROR)
    tf_bars = _set_transformers_progress_bars(False)  # transformers 5 draws bars for loading and saving weights
    ort = _set_ort_severity(3)
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_NOISY_MODULES)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            import torch.jit

            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        try:
            yield
        finally:
            for name, level in saved_levels.items():
                (logging.getLogger() if name == "root" else logging.getLogger(name)).setLevel(level)
            if tf_verbosity is not None:
                _set_transformers_verbosity(tf_verbosity)
            if tf_bars is not None:
                _set_transformers_progress_bars(tf_bars)
            if ort is not None:
                ort.set_default_logger_severity(2)
            if saved_env is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)


def _configure_library_loggers() -> None:
    """Let transformers and optimum set up their root loggers now rather than on first import later."""
    for module in ("transformers.utils.logging", "optimum.utils.logging"):
        try:
            __import__(module, fromlist=["get_logger"]).get_logger()
        except ImportError:  # pragma: no cover - both are dependencies
            pass


def _set_transformers_verbosity(level: int) -> int | None:
    """Set transformers' library verbosity; return the previous one."""
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:  # pragma: no cover
        return None
    previous = tf_logging.get_verbosity()
    tf_logging.set_verbosity(level)
    return previous


def _set_transformers_progress_bars(enabled: bool) -> bool | None:
    """Turn transformers' progress bars on or off; return whether they were on (None without transformers)."""
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:  # pragma: no cover
        return None
    previous = tf_logging.is_progress_bar_enabled()
    (tf_logging.enable_progress_bar if enabled else tf_logging.disable_progress_bar)()
    return previous


def _set_ort_severity(level: int):  # noqa: ANN202 - returns the onnxruntime module or None
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover
        return None
    onnxruntime.set_default_logger_severity(level)
    return onnxruntime

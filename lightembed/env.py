"""Every LIGHTEMBED_* environment variable the runtime reads, with the constructor argument or flag it stands in
for, and the one parser of their values. A variable only ever supplies a default: an explicit argument wins."""

from __future__ import annotations

import os
from dataclasses import dataclass

PREFIX = "LIGHTEMBED_"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the argument it is the default of, and what it does."""

    name: str
    twin: str
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable("LIGHTEMBED_VERIFY", "verify=", "0 skips the sha256 check of the ONNX file at load"),
    Variable("LIGHTEMBED_BACKEND", "backend=", "onnx|openvino|auto: what backend=None means"),
    Variable("LIGHTEMBED_PREOPTIMIZED", "preoptimized=", "0 loads the exported file, never its pre-optimized copy"),
    Variable("LIGHTEMBED_SPINNING", "spinning=", "1 lets onnxruntime's intra-op threads spin while they wait"),
    Variable("LIGHTEMBED_OPENVINO_CACHE", "model_kwargs={'ov_config': {'CACHE_DIR': ...}}",
             "folder of OpenVINO's compiled-model cache; 0 turns it off"),  # fmt: skip
    Variable("LIGHTEMBED_MODEL", "lightembed.serverless.load_model(model=)", "the model a serverless handler loads"),
    Variable("LIGHTEMBED_FILE_NAME", "file_name=", "the ONNX file a serverless handler loads"),
    Variable("LIGHTEMBED_MODEL_NAME", "the `model` field", "the name a serverless handler answers under"),
    Variable("LIGHTEMBED_THREADS", "threads=", "intra-op threads of a serverless handler's model"),
    Variable("LIGHTEMBED_MODELS", "lightembed serve MODEL ...", "the models `lightembed serve` loads, space-separated"),
    Variable("LIGHTEMBED_API_KEY", "lightembed serve --api-key", "the key every route but /health requires"),
    Variable("LIGHTEMBED_PORT", "lightembed serve --port", "the port `lightembed serve` listens on"),
    Variable("LIGHTEMBED_HTTP", "lightembed serve --http", "uvicorn's HTTP parser: auto, h11 or httptools"),
    Variable("LIGHTEMBED_<FLAG>", "lightembed serve --<flag>",
             "every flag of `lightembed serve` (LIGHTEMBED_PORT, LIGHTEMBED_API_KEY, ...)"),  # fmt: skip
    Variable("LIGHTEMBED_EXPORT_TUNE", "lightembed-export --tune / --no-tune",
             "the exporter's default: 0 skips timing the backends on the exporting machine"),  # fmt: skip
    Variable("LIGHTEMBED_SLOW", "pytest -m slow", "tests only: 1 runs the slow tests"),
)


def get(name: str, default: str | None = None) -> str | None:
    """The variable's value (stripped), or `default` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def flag(name: str, default: bool | None = None) -> bool | None:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case); `default` when unset. Any other value is
    an error naming the variable, so a typo never silently means "off"."""
    from lightembed.errors import LightembedValueError

    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise LightembedValueError(f"{name}={value!r}: expected one of {TRUE} or {FALSE}.")

"""The onnxruntime backend: the one place that creates onnxruntime sessions, and `OnnxGraph`, a session behind the
`Graph` protocol."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from lightembed import env, machine
from lightembed.errors import LightembedValueError, ModelFileError
from lightembed.graphs.protocol import Modality, check_inputs, choose_output, finite, last_dim, make_feed
from lightembed.graphs.providers import CPU, CUDA, requested_gpu

# No spinning intra-op threads (onnxruntime spins by default): 1.11x as fast on a quiet 2-core machine and
# 1.29-1.38x with one or two busy processes beside it (benchmarks/spinning.py; see
# benchmarks/RESULTS.md, "Thread spinning").
SPINNING = False
_DTYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32"}


def spinning_default(spinning: bool | None = None) -> bool:
    """Whether intra-op threads spin while waiting for work: `spinning` when given, else LIGHTEMBED_SPINNING, else
    SPINNING."""
    if spinning is not None:
        return spinning
    found = env.flag("LIGHTEMBED_SPINNING")
    return SPINNING if found is None else found


def check_threads(threads: Any) -> int | None:
    """`threads` if it is None or a positive integer; an error naming it otherwise."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise LightembedValueError(f"threads must be a positive integer, got {threads!r}.")
    return threads


def _options(threads: int | None, spinning: bool | None, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = check_threads(threads) or machine.usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if not spinning_default(spinning):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(
    path: str | Path,
    providers: Sequence[Any],
    threads: int | None = None,
    spinning: bool | None = None,
    optimize: bool = True,
) -> ort.InferenceSession:
    """An inference session for `path` with the given providers, intra-op thread count and thread spinning (None:
    `spinning_default()`); `optimize=False` skips onnxruntime's graph optimization (for a file saved already
    optimized, lightembed.graphs.preoptimized)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {path}")
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options = _options(threads, spinning, level)
    gpu = requested_gpu(providers)
    on_gpu = f" on CUDA device_id {gpu}" if gpu is not None else ""
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        raise ModelFileError(f"Could not load ONNX model {path}{on_gpu}: {exc}") from None
    if gpu is not None and CUDA not in session.get_providers():
        raise LightembedValueError(
            f"CUDA device_id {gpu} was requested but onnxruntime fell back to {session.get_providers()} for "
            f"{path}: the CUDA libraries or that GPU could not be loaded (is there a GPU {gpu}?)."
        )
    return session


def save_optimized(path: Path, target: Path, data_name: str) -> None:
    """Save `path` as onnxruntime optimizes it for this CPU (EXTENDED fusions) to `target`, with every initializer
    of 128 bytes or more in the data file `data_name` beside it."""
    # EXTENDED, not ALL: ALL adds layout rewrites that are only valid for the session that made them.
    options = _options(1, None, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", data_name)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "128")
    ort.InferenceSession(str(path), options, providers=[CPU])


def output_shapes(path: Path) -> dict[str, list[Any] | None]:
    """The declared output shapes of an ONNX file, read by a CPU session that optimizes nothing."""
    session = create_session(path, [CPU], 1, optimize=False)
    return {node.name: node.shape for node in session.get_outputs()}


class OnnxGraph:
    """An onnxruntime session behind the `Graph` protocol: feeds it only the inputs it takes, with their dtypes.

    Only the requested output is copied back from a GPU. Setting `io_binding` runs CUDA sessions through an
    IO binding instead of session.run; it measured no faster here (benchmarks/RESULTS_GPU.md), so it is off.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        preferred_outputs: Sequence[str] = (),
        modality: Modality = "text",
        path: Path | None = None,
    ) -> None:
        self.session = session
        self.path = path
        self.input_dtypes = check_inputs(((n.name, _DTYPES.get(n.type)) for n in session.get_inputs()), modality)
        self._shapes = {node.name: node.shape for node in session.get_outputs()}
        self.output_names = list(self._shapes)
        self.output_name = choose_output(self.output_names, preferred_outputs)
        self.output_width = last_dim(self._shapes[self.output_name])
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self._cuda_device = _cuda_device_id(session)
        self.io_binding = False

    @property
    def input_names(self) -> list[str]:
        return list(self.input_dtypes)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def threads(self) -> int:
        return int(self.session.get_session_options().intra_op_num_threads)

    def output_shape(self, name: str | None = None) -> list[Any] | None:
        return self._shapes[name or self.output_name]

    def __call__(self, arrays: Mapping[str, Any], output: str | None = None) -> np.ndarray:
        name = output or self.output_name
        feed = make_feed(arrays, self.input_dtypes)
        if self.io_binding and self._cuda_device is not None:
            binding = self.session.io_binding()
            for key, value in feed.items():
                binding.bind_cpu_input(key, value)
            binding.bind_output(name, "cuda", self._cuda_device)
            self.session.run_with_iobinding(binding)
            (out,) = binding.copy_outputs_to_cpu()
        else:
            (out,) = self.session.run([name], feed)
        return finite(out, name, self.path)

    def run(self, arrays: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        names = list(outputs)
        values = self.session.run(names, make_feed(arrays, self.input_dtypes))
        return {name: finite(value, name, self.path) for name, value in zip(names, values)}


def _cuda_device_id(session: ort.InferenceSession) -> int | None:
    """The GPU a session runs on, or None if it does not run on CUDA."""
    if CUDA not in session.get_providers():
        return None
    options = session.get_provider_options().get(CUDA, {})
    try:
        return int(options.get("device_id", 0))
    except (TypeError, ValueError):
        return 0


def open_file(path: Path, options: Any) -> OnnxGraph:
    """The backend's opener (lightembed.graphs.policy): a session for `path` on `options.providers`; a
    pre-optimized copy (`options.optimize` False) is opened without optimization."""
    session = create_session(path, options.providers, options.threads, options.spinning, optimize=options.optimize)
    return OnnxGraph(session, options.preferred_outputs, options.modality, path)

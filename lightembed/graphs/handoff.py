"""Starting on onnxruntime and handing over to OpenVINO: when the policy (not the caller) chose OpenVINO for a
file, the model answers on onnxruntime at once and OpenVINO opens the same file in a background thread from the
second call on; every call after it is ready runs on OpenVINO.

Why: importing OpenVINO and compiling a graph cost a fresh process seconds (more without a filled model cache),
several times onnxruntime's load of the pre-optimized copy, while the policy chose OpenVINO only for its
throughput. A serverless cold start or a CLI run answers its first texts on onnxruntime instead. The two backends
give near-lossless-equal vectors (the policy picks OpenVINO only at min cos >= 0.9999 to fp32), not bit-equal ones:
`backend="openvino"` opens OpenVINO directly and never switches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lightembed.graphs.protocol import Graph

START_AFTER_CALLS = 2
"""The later graph starts opening after this many calls: a process that embeds one batch and ends (a script, a
CLI run) never compiles, nor waits at exit for a compile it would not use."""


class HandoffGraph:
    """A Graph that runs `first` until `open_later()` (started in a thread after START_AFTER_CALLS calls) has
    returned, then runs what it returned. If opening it fails, `first` keeps running and `error` says why."""

    def __init__(self, first: Graph, open_later: Callable[[], Graph]) -> None:
        self._first = first
        self._open_later = open_later
        self._later: Graph | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._calls = 0
        self.input_dtypes = first.input_dtypes
        self.output_names = first.output_names
        self.output_name = first.output_name
        self.output_width = first.output_width
        self.metadata = first.metadata

    # io_binding is set by the model after opening (CUDA only); both graphs get it
    @property
    def io_binding(self) -> bool:
        return self.current.io_binding

    @io_binding.setter
    def io_binding(self, value: bool) -> None:
        self._first.io_binding = value
        if self._later is not None:
            self._later.io_binding = value

    @property
    def current(self) -> Graph:
        """The graph a call runs on now."""
        return self._later or self._first

    @property
    def handed_over(self) -> bool:
        return self._later is not None

    @property
    def input_names(self) -> list[str]:
        return self.current.input_names

    @property
    def providers(self) -> list[str]:
        return self.current.providers

    @property
    def threads(self) -> int:
        return self.current.threads

    def output_shape(self, name: str | None = None) -> list[Any] | None:
        return self.current.output_shape(name)

    def __call__(self, arrays: Mapping[str, Any], output: str | None = None) -> np.ndarray:
        out = self.current(arrays, output)
        self._called()
        return out

    def run(self, arrays: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        out = self.current.run(arrays, outputs)
        self._called()
        return out

    def _called(self) -> None:
        self._calls += 1
        if self._thread is None and self._calls >= START_AFTER_CALLS:
            self.start()

    def __getattr__(self, name: str) -> Any:  # anything else a backend's graph offers, from the one running
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.current, name)

    def start(self) -> None:
        """Start opening the later graph (once); the second call does this."""
        with self._lock:
            if self._thread is not None:
                return
            # Not a daemon: a process that ends while OpenVINO compiles waits for it rather than tearing the
            # interpreter down under a thread inside its C++ code.
            self._thread = threading.Thread(target=self._open, name="lightembed-handoff", daemon=False)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Start opening the later graph if not yet started, wait for it; True once calls run on it."""
        self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        return self.handed_over

    def _open(self) -> None:
        try:
            later = self._open_later()
            later.io_binding = self._first.io_binding
            self._later = later
            self._first = later  # onnxruntime's session goes once the calls still on it return: one model in memory
        except Exception as exc:  # noqa: BLE001 - onnxruntime keeps answering; the reason is kept for runtime_info
            self.error = exc

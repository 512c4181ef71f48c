"""Where a request's time went, for its Server-Timing header: `read` (the body read and parsed), `tokenize` (the
inputs tokenized, waiting for the tokenizer thread included), `infer` (in the model's batcher: queued and run) and
`total` (from the request's headers to its answer), in milliseconds. Time before the headers were parsed (a busy
event loop, a slow client) is outside all of them, which is what tells the server's share of a slow answer from the
network's and the client's."""

from __future__ import annotations

import contextvars
import time
from typing import Any, MutableMapping

SCOPE_KEY = "lightembed.timing"
"""Where a request's durations (seconds by name) live in its ASGI scope."""

request_timing: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "lightembed_request_timing", default=None
)
"""The durations of the request being answered (the same dict as in its scope); the app sets it."""


def start(scope: MutableMapping[str, Any]) -> None:
    """Make the durations of the request of `scope` (a dict kept in its scope) the current ones."""
    request_timing.set(scope.setdefault(SCOPE_KEY, {}))


def note(name: str, seconds: float) -> None:
    """Add `seconds` to the current request's duration `name` (no request: nothing)."""
    timing = request_timing.get()
    if timing is not None:
        timing[name] = timing.get(name, 0.0) + seconds


def header(scope: MutableMapping[str, Any], started: float) -> bytes:
    """The Server-Timing value of the request of `scope`, whose headers were parsed at perf_counter() `started`."""
    parts = [f"{name};dur={1000 * seconds:.1f}" for name, seconds in scope.get(SCOPE_KEY, {}).items()]
    parts.append(f"total;dur={1000 * (time.perf_counter() - started):.1f}")
    return ", ".join(parts).encode()

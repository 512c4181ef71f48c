"""The host pipeline: while the graph runs batch i, a thread tokenizes and pads the batches after it, so a GPU
does not wait for the CPU between batches (tokenizers releases the GIL while it encodes, so the two overlap).

It runs the model's own stages (`tokenize_inputs -> plan -> pad`, then the caller's `forward`) on chunks: the
inputs are ordered longest first by characters, cut into chunks of CHUNK_BATCHES batches, and each chunk is
tokenized and planned on its own (planning needs the token counts, so a single plan over all inputs would have to
wait for all of them). Every input lands in exactly one batch and its row is returned with its index, so the
caller stores results in input order as it does for the serial path.

On by default where the graph runs on CUDA; `model.host_pipeline = True` turns it on on CPU (where the graph uses
every core, so overlapping gains little), False turns it off.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lightembed.progress import progress
from lightembed.tokenize import Batch, TextInput

CHUNK_BATCHES = 4
"""Batches per tokenized chunk: long enough to sort well, short enough that the first batch starts soon."""
DEPTH = 4
"""Padded batches the tokenizing thread may hold ready ahead of the graph (bounds the memory it takes)."""
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def wanted(device: str, setting: bool | None) -> bool:
    """Whether encode() pipelines: `setting` when given, else on CUDA only."""
    return device == "cuda" if setting is None else bool(setting)


def _chars(item: TextInput) -> int:
    return len(item) if isinstance(item, str) else sum(len(part) for part in item)


def batches(
    model: Any, items: Sequence[TextInput], batch_size: int, show_progress_bar: bool | None = None
) -> Iterator[tuple[np.ndarray, Batch]]:
    """(indices into `items`, padded batch) for every input, each exactly once; the batches after the one being
    consumed are tokenized and padded on a thread. An error there (a bad text) is raised here; closing the
    iterator early stops the thread."""
    order = np.argsort([-_chars(item) for item in items], kind="stable")
    step = batch_size * CHUNK_BATCHES
    ready: queue.Queue[Any] = queue.Queue(maxsize=DEPTH)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for start in range(0, len(order), step):
                chunk = order[start : start + step]
                encodings = model.tokenize_inputs([items[i] for i in chunk])
                for idx in model.plan(encodings, batch_size):
                    if not put((chunk[idx], model.pad([encodings[i] for i in idx]))):
                        return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(_Failed(exc))

    worker = threading.Thread(target=produce, name="lightembed-tokenize", daemon=True)
    worker.start()

    def consume() -> Iterator[tuple[np.ndarray, Batch]]:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    try:
        yield from progress(consume(), bool(show_progress_bar), "Batches")
    finally:
        stop.set()
        worker.join()

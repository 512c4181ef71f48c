"""Dynamic batching for one model: inputs of many concurrent requests gathered into padded batches.

Requests arrive already tokenized (`model.tokenize_inputs`, run off the event loop by the caller). The batcher
takes the oldest waiting request and every later one with the same key (what forward() must share: prompt
length, activation, max_active_dims ...), up to `max_items` inputs; a request with more inputs than that is split
and the rest waits at the front. The gathered inputs are planned longest first under `max_tokens` padded tokens
(`lightembed.tokenize.plan_batches`), padded (`model.pad`) and run (`model.forward`) in the model's own worker
thread, never on the event loop, and each row goes back to its request at its own position.

A request whose caller stopped waiting (client gone, timeout) before its inputs were taken costs no inference.
If a batch holding several requests fails, each request is run again alone, so one bad input fails only its own
request. At most `max_queue` inputs wait or run at once per model; beyond that `submit` raises Overloaded (429).
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from lightembed.server.protocol import Overloaded
from lightembed.tokenize import plan_batches, token_counts


@dataclass(eq=False)
class Job:
    """One request's inputs, the rows filled so far and the future its caller awaits."""

    key: Hashable
    options: dict[str, Any]
    encodings: Sequence[Any]
    future: asyncio.Future
    arrived: float
    rows: list[Any] = field(default_factory=list)
    taken: int = 0  # inputs handed to a batch so far
    done: int = 0  # inputs whose result is in `rows`

    def __post_init__(self) -> None:
        self.rows = [None] * len(self.encodings)


class Batcher:
    """Gathers the requests of one model into batches and runs them in one worker thread.

    `max_items`: inputs per gather (and rows per batch); `max_tokens`: padded tokens (rows x longest) per batch
    (None: no cap); `wait_s`: how long the oldest request may wait for others before its batch starts when fewer
    than `max_items` inputs are waiting; `max_queue`: inputs waiting or running at once; `merge=False` runs each
    request's inputs on their own (no batching across requests, for comparison). `observe(rows, padded_tokens,
    seconds)` is called after every batch (metrics).
    """

    def __init__(
        self,
        model: Any,
        *,
        max_items: int = 32,
        max_tokens: int | None = 2048,
        wait_s: float = 0.002,
        max_queue: int = 4096,
        merge: bool = True,
        name: str = "model",
        observe: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.model = model
        self.max_items = max_items
        self.max_tokens = max_tokens
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.merge = merge
        self.name = name
        self.observe = observe
        self._pending: collections.deque[Job] = collections.deque()
        self._in_system = 0  # inputs waiting or running
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"lightembed-{name}")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._batch_seconds = 0.05  # running mean of one batch's time, for Retry-After

    # ----- public -------------------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Inputs waiting for a batch (not running yet)."""
        return sum(len(j.encodings) - j.taken for j in self._pending if not j.future.done())

    def start(self) -> None:
        """Start gathering (on the running event loop)."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        """Stop gathering; the batch running finishes first."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    async def submit(self, encodings: Sequence[Any], key: Hashable = None, **options: Any) -> list[Any]:
        """Run `encodings` through forward(batch, **options); one result row per encoding, in order. Cancelling
        the caller before the inputs are taken drops them without inference."""
        if self._wakeup is None:
            raise RuntimeError("Batcher.start() was not called.")
        n = len(encodings)
        if n == 0:
            return []
        if self._in_system > 0 and self._in_system + n > self.max_queue:
            wait = self._in_system / max(1, self.max_items) * self._batch_seconds
            raise Overloaded(
                f"The queue of model {self.name!r} is full ({self._in_system} inputs waiting or running, at most "
                f"{self.max_queue}); retry later.",
                retry_after=int(wait) + 1,
            )
        job = Job(key, options, encodings, asyncio.get_running_loop().create_future(), time.monotonic())
        self._pending.append(job)
        self._in_system += n
        self._wakeup.set()
        try:
            return await job.future
        finally:
            if job.future.cancelled():
                self._in_system -= len(encodings) - job.taken  # the untaken inputs never run

    # ----- gathering ----------------------------------------------------------------------------------------
    def _drop_finished_front(self) -> None:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()

    def _waiting_inputs(self) -> int:
        return sum(len(j.encodings) - j.taken for j in self._pending if not j.future.done())

    def _take(self) -> list[tuple[Job, int, int]]:
        """(job, first row, end row) pieces: the oldest job's key, oldest first, at most max_items inputs."""
        picks: list[tuple[Job, int, int]] = []
        keep: collections.deque[Job] = collections.deque()
        room = self.max_items
        key: Any = None
        for job in self._pending:
            if job.future.done():
                continue
            if room == 0 or (picks and (job.key != key or not self.merge)):
                keep.append(job)
                continue
            key = job.key
            take = min(room, len(job.encodings) - job.taken)
            picks.append((job, job.taken, job.taken + take))
            job.taken += take
            room -= take
            if job.taken < len(job.encodings):
                keep.append(job)
        self._pending = keep
        return picks

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_finished_front()
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            age = time.monotonic() - self._pending[0].arrived
            if self.merge and age < self.wait_s and self._waiting_inputs() < self.max_items:
                await asyncio.sleep(self.wait_s - age)
                continue
            picks = self._take()
            if not picks:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._forward_pieces, picks)
            except BaseException as exc:  # noqa: BLE001 - every failure goes to its request
                if isinstance(exc, asyncio.CancelledError):
                    raise
                results = await self._alone(loop, picks, exc)
            self._deliver(picks, results)

    async def _alone(self, loop: asyncio.AbstractEventLoop, picks: list[tuple[Job, int, int]], exc: BaseException) -> list[Any]:
        """After a failed batch: each job's piece again on its own, so only the bad request fails."""
        if len({id(job) for job, _, _ in picks}) == 1:
            return [exc for _ in picks]
        out: list[Any] = []
        for piece in picks:
            try:
                out.extend(await loop.run_in_executor(self._executor, self._forward_pieces, [piece]))
            except Exception as err:  # noqa: BLE001
                out.append(err)
        return out

    def _forward_pieces(self, picks: list[tuple[Job, int, int]]) -> list[Any]:
        """In the worker thread: plan, pad and run the picked inputs; one list of rows per piece."""
        start = time.perf_counter()
        encodings = [enc for job, a, b in picks for enc in job.encodings[a:b]]
        options = picks[0][0].options
        rows: list[Any] = [None] * len(encodings)
        padded = 0
        lengths = token_counts(encodings)
        for idx in split_by_length(plan_batches(lengths, self.max_items, self.max_tokens), lengths):
            batch = self.model.pad([encodings[i] for i in idx])
            padded += int(batch.input_ids.size)
            out = self.model.forward(batch, **options)
            for row, i in enumerate(idx):
                rows[i] = out[row]
        seconds = time.perf_counter() - start
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
        if self.observe is not None:
            self.observe(len(encodings), padded, seconds)
        pieces, at = [], 0
        for _, a, b in picks:
            pieces.append(rows[at : at + b - a])
            at += b - a
        return pieces

    def _deliver(self, picks: list[tuple[Job, int, int]], results: list[Any]) -> None:
        for (job, a, b), rows in zip(picks, results):
            self._in_system -= b - a
            if job.future.done():
                continue
            if isinstance(rows, BaseException):
                self._in_system -= len(job.encodings) - job.taken  # its other inputs will not run
                job.taken = len(job.encodings)
                job.future.set_exception(rows)
                continue
            job.rows[a:b] = rows
            job.done += b - a
            if job.done == len(job.encodings):
                job.future.set_result(job.rows)


def split_by_length(plan: list[np.ndarray], lengths: np.ndarray, ratio: float = 2.0) -> list[np.ndarray]:
    """Each longest-first batch of `plan` cut where an input is `ratio` times shorter than its batch's longest,
    so no input is padded to more than `ratio` times its length. Requests gathered from many clients mix one
    long document with short queries far more often than one caller's list does; padding the queries to the
    document's length multiplied the work (benchmarks/serve.py, see benchmarks/RESULTS.md)."""
    out: list[np.ndarray] = []
    for idx in plan:
        start = 0
        for i in range(1, len(idx)):
            if lengths[idx[i]] * ratio < lengths[idx[start]]:
                out.append(idx[start:i])
                start = i
        out.append(idx[start:])
    return out

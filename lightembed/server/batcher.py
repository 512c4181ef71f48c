"""Dynamic batching for one model: inputs of many concurrent requests gathered into padded batches, admitted and
ordered by the work they need.

Requests arrive already tokenized (`model.tokenize_inputs`, run off the event loop by the caller). The batcher fits
the model's speed on its recent batches (seconds = a fixed cost per batch + a cost per padded token). At arrival each
request's work is estimated in seconds of inference with that fit and the model's own planner (`model.plan`: each
input costs the longest input of the batch it would run in, plus its share of the batch's fixed cost), and kept in
seconds: the fit's two costs move with every batch, their prediction for a batch much less. A request is admitted
only when the work that would run before it, plus its own, fits its deadline (`request_deadline`, set per request
by the app); otherwise `submit` raises Overloaded (429) with a Retry-After from the work queued, at once, before
any work. A large request is checked once more before it is tokenized (`reserve`), on a lower bound of its work
read from its text, so that most refusals cost no tokenizing. A request that alone, on an idle model, needs more than its
whole timeout gets 413 (on a busy model, 429: the speed measured under load may be what is too slow).

Order: small requests (one batch of work or less) first, first come first served, so one-text requests do not wait
behind documents; then the larger ones, first come first served, each admitted only when all the work queued
ahead of it, plus the share of the model the small requests took over the last SMALL_WINDOW seconds, fits before
its deadline; a request whose slack is
running out (its deadline minus twice its remaining time is under URGENT_SLACK of its timeout)
becomes urgent and gets every other batch (earliest deadline first; every batch once started, when only that
finishes it in time), so large requests are not starved; a safety net, rarely needed now that admission counts the small work. A
request that can no longer finish by its deadline is refused (429) before any of its inputs run; work is never
started that cannot finish in time.

A batch: the head request and every other with the same key (what forward() must share: prompt length,
activation, max_active_dims ...), up to `max_items` inputs and about `max_batch_tokens` of estimated work; a
request with more is split and the rest waits, so shorter requests run between the batches of a long one. The gathered inputs are planned with `model.plan`, padded (`model.pad`) and run (`model.forward`) in the
model's own worker thread, never on the event loop, and each row goes back to its request at its own position.

A request whose caller stopped waiting (client gone, timeout) before its inputs were taken costs no inference.
If a batch holding several requests fails, each request is run again alone, so one bad input fails only its own
request. At most `max_queue` inputs wait or run at once per model (a memory bound); beyond it requests get 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Sequence

import numpy as np

from lightembed.errors import LightembedRuntimeError
from lightembed.server import timing
from lightembed.server.protocol import Overloaded, PayloadTooLarge

if TYPE_CHECKING:
    from lightembed.server.model import ServedModel

request_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "lightembed_request_deadline", default=None
)
"""(deadline on time.monotonic(), timeout in seconds) of the request being answered; the app sets it."""

# Admit while the work ahead fits this share of the time left: the rate is an average, batches vary.
ADMIT_SHARE = 0.8
# A request turns urgent (every other batch) when the time left, less twice its remaining work, is under this share
# of its timeout: twice, since it then gets half the batches; late, so short requests keep the model meanwhile.
URGENT_SLACK = 0.2
CRITICAL_TURNS = 4  # a critical request gets 3 batches in 4 (so it is critical below 1.5x its time left)
# Before tokenizing, a large request is refused when its least work fills more than this share of the room that the
# admission after tokenizing allows (which sees the real cost and newer batches: in an overload run the fit's
# prediction for one 256-token batch moved by a median 14% within 60 batches), so that a request let through by a
# hair is not refused there, after waiting to be tokenized (0.9 left one such refusal, at 0.3 s, in ~2,000 per
# 90 s overload run).
RESERVE_SHARE = 0.85
_DECAY = 0.95  # weight of the past in the measured speed, per batch
# The share of the model's time spent on small requests in the last SMALL_WINDOW seconds is what a large request must
# leave to the small ones arriving while it runs (they go first). Measured on the batches, not estimated: merged
# into shared batches, small requests cost a fraction of what each would alone.
SMALL_WINDOW = 10.0


def token_lengths(encodings: Sequence[Any]) -> np.ndarray:
    """Tokens per encoding (special tokens included)."""
    return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))


@dataclass(eq=False)
class Job:
    """One request's inputs, what each costs, the rows filled so far and the future its caller awaits."""

    key: Hashable
    options: dict[str, Any]
    encodings: Sequence[Any]
    future: asyncio.Future
    arrived: float
    unit: np.ndarray  # estimated seconds per input: its padded tokens and its share of its batch's fixed cost
    padded: np.ndarray  # estimated padded tokens per input
    deadline: float | None = None
    timeout: float | None = None
    call: Callable[[], list[Any]] | None = None  # run alone instead of forward (e.g. token embeddings via encode)
    small: bool = False  # one batch of work or less: goes first
    rows: list[Any] = field(default_factory=list)
    taken: int = 0  # inputs handed to a batch so far
    done: int = 0  # inputs whose result is in `rows`

    def __post_init__(self) -> None:
        self.rows = [None] * len(self.encodings)
        self.cost_left = float(self.unit.sum())  # seconds not yet delivered

    @property
    def untaken_cost(self) -> float:
        """Estimated seconds of the inputs not handed to a batch yet."""
        return float(self.unit[self.taken :].sum())

    @property
    def untaken_padded(self) -> float:
        """Estimated padded tokens of the inputs not handed to a batch yet."""
        return float(self.padded[self.taken :].sum())


class Batcher:
    """Gathers the requests of one model into batches and runs them in one worker thread.

    `max_items`: inputs per gather (and rows per batch); padded tokens per batch are the model's
    `max_batch_tokens` (its `plan` stage); `wait_s`: how long the oldest request may wait for others before its
    batch starts when fewer than `max_items` inputs are waiting; `max_queue`: inputs waiting or running at once;
    `merge=False` runs each request's inputs on their own (no batching across requests, for comparison).
    `observe(rows, padded_tokens, seconds)` is called after every batch (metrics).
    """

    def __init__(
        self,
        model: "ServedModel",
        *,
        max_items: int = 32,
        wait_s: float = 0.002,
        max_queue: int = 4096,
        merge: bool = True,
        name: str = "model",
        observe: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.model = model
        self.max_items = max_items
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.merge = merge
        self.name = name
        self.observe = observe
        self._pending: list[Job] = []
        self._in_system = 0  # inputs waiting or running
        self._work = 0.0  # estimated seconds admitted and not delivered
        self._reserved = 0.0  # least seconds of the large requests being tokenized (reserve)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"lightembed-{name}")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # Decayed sums over worker calls of (g = padded batches, x = padded tokens, y = seconds), for the fit
        # y = a g + b x: a fixed cost per batch and a cost per token. One ratio of tokens to seconds would charge
        # the fixed cost of many one-text batches to every token and overestimate large requests severalfold.
        self._fit = np.zeros(5)  # gg, gx, xx, gy, xy
        self._last_urgent = False
        self._turn = 0
        # (finished at, seconds of its batch spent on small requests' inputs) of recent batches; on the event loop
        # only (the worker thread hands each over with call_soon_threadsafe: summing it while that thread appended
        # raised "deque mutated during iteration", two 500s in an overload run)
        self._small: deque[tuple[float, float]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----- public -------------------------------------------------------------------------------------------
    @property
    def max_tokens(self) -> int | None:
        """Padded tokens per batch: the model's max_batch_tokens."""
        return self.model.max_batch_tokens

    @property
    def queued(self) -> int:
        """Inputs waiting for a batch (not running yet)."""
        return sum(len(j.encodings) - j.taken for j in self._pending if not j.future.done())

    @property
    def queued_work(self) -> float:
        """Estimated seconds of inference admitted and not yet answered (waiting or running)."""
        return self._work

    @property
    def _measured(self) -> bool:
        """Whether a batch has run, so the speed fit exists (speed() is not None), without solving it."""
        return bool(self._fit[2] > 0)

    @property
    def _batch_tokens(self) -> float:
        """Padded tokens of one batch of work: what tells a small request (one batch or less) from a large one."""
        return float(self.max_tokens or 2048)

    def speed(self) -> tuple[float, float] | None:
        """(seconds per batch, seconds per padded token) fitted on the recent batches; None before the first."""
        gg, gx, xx, gy, xy = self._fit
        if xx <= 0:
            return None
        det = gg * xx - gx * gx
        if det > 1e-2 * gg * xx:  # batches varied enough in size to tell the two costs apart
            a, b = (gy * xx - xy * gx) / det, (xy * gg - gy * gx) / det
            if a >= 0 and b > 0:
                return a, b
        return 0.0, max(xy / xx, 1e-12)  # batches all alike (or a noisy fit): one ratio

    def record_speed(self, batches: int, padded_tokens: int, seconds: float) -> None:
        """Add one worker call (its padded batches, tokens and seconds) to the speed fit."""
        g, x = float(batches), float(padded_tokens)
        self._fit = _DECAY * self._fit + np.array([g * g, g * x, x * x, g * seconds, x * seconds])

    def cost(self, encodings: Sequence[Any]) -> np.ndarray:
        """Estimated seconds of inference of each input, from the model's own plan and the speed fit: the longest
        input of its batch (its padded length) at the cost per token, plus its share of the batch's fixed cost
        (zeros before the first batch)."""
        return self._estimate(encodings)[0]

    def _estimate(self, encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, padded length) of each input."""
        lengths = token_lengths(encodings)
        fixed, per_token = self.speed() or (0.0, 0.0)
        padded = np.zeros(len(encodings), dtype=np.float64)
        shares = np.zeros(len(encodings), dtype=np.float64)
        for idx in self.model.plan(encodings, self.max_items):
            padded[idx] = lengths[idx].max(initial=1)
            shares[idx] = fixed / len(idx)
        return padded * per_token + shares, padded

    def start(self) -> None:
        """Start gathering (on the running event loop)."""
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"batcher-{self.name}")

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
        the caller before the inputs are taken drops them without inference. Overloaded (429) when the work
        cannot be done by the request's deadline."""
        if not encodings:
            return []
        return await self._enqueue(encodings, key, options, None)

    async def run_alone(self, encodings: Sequence[Any], call: Callable[[], list[Any]]) -> list[Any]:
        """Run `call()` in the model's worker thread, admitted and ordered as a request of `encodings` (its
        tokenized inputs, for the cost); one result per encoding."""
        return await self._enqueue(encodings, object(), {}, call)

    async def _enqueue(self, encodings: Sequence[Any], key: Hashable, options: dict, call: Any) -> list[Any]:
        if self._wakeup is None:
            raise LightembedRuntimeError("Batcher.start() was not called.")
        n = len(encodings)
        now = time.monotonic()
        unit, padded = self._estimate(encodings)
        small = self._size_class(float(padded.sum())) == 0
        deadline, timeout = request_deadline.get() or (None, None)
        if self._in_system > 0 and self._in_system + n > self.max_queue:
            raise Overloaded(
                f"The queue of model {self.name!r} is full ({self._in_system} inputs waiting or running, at most "
                f"{self.max_queue}); retry later.",
                retry_after=self._drain_seconds(self._work),
            )
        self._admit(float(unit.sum()), small, now, deadline, timeout)
        job = Job(key, options, encodings, asyncio.get_running_loop().create_future(), now, unit, padded, deadline,
                  timeout, call, small)
        self._pending.append(job)
        self._in_system += n
        self._work += job.cost_left
        self._wakeup.set()
        try:
            return await job.future
        finally:
            timing.note("infer", time.monotonic() - now)
            if job.future.cancelled():
                self._release(job)

    @contextlib.contextmanager
    def reserve(self, inputs: int, at_least: float) -> Iterator[None]:
        """Around the tokenizing of a request of `inputs` inputs and at least `at_least` tokens (a bound read from
        its text: service.least_tokens): raise Overloaded (429) at once when the request is surely larger than one
        batch and could not be admitted even at that least work, so that its refusal costs no tokenizing; else
        hold that work as reserved until the block ends, so that large requests tokenizing at the same time are
        checked against each other too, not each against the queue alone."""
        fitted = self.speed()
        deadline, timeout = request_deadline.get() or (None, None)
        least = 0.0
        if fitted is not None:
            batches = max(math.ceil(inputs / max(1, self.max_items)), math.ceil(at_least / self._batch_tokens))
            least = fitted[0] * batches + fitted[1] * at_least
        queued = self._work + self._reserved
        # On an idle model the admission after tokenizing decides alone (admitted, or 413 when it can never fit):
        # the margin would refuse, again and again, a request that fits.
        if least and queued > 0 and deadline is not None and timeout is not None and self._size_class(at_least) > 0:
            room = self._large_room(time.monotonic(), deadline) * RESERVE_SHARE
            ahead = queued + least
            if ahead > room:
                raise Overloaded(
                    f"Model {self.name!r} has about {queued:.1f} s of work queued; this request "
                    f"(at least {least:.1f} s of work) could not finish within the {timeout:g} s request timeout. "
                    "Retry after the Retry-After seconds.",
                    retry_after=self._drain_seconds(ahead - max(room, 0.0)),
                )
        self._reserved += least
        try:
            yield
        finally:
            self._reserved -= least

    # ----- admission ----------------------------------------------------------------------------------------
    def _drain_seconds(self, work: float) -> int:
        """Whole seconds until `work` (estimated seconds) is drained; at most the request timeout, since admitted
        work always fits one timeout (a longer figure would be a noisy speed fit, not the queue)."""
        seconds = max(1, math.ceil(work))
        timeout = (request_deadline.get() or (None, None))[1]
        return min(seconds, max(1, math.ceil(timeout))) if timeout else seconds

    def _admit(self, cost: float, small: bool, now: float, deadline: float | None, timeout: float | None) -> None:
        """Raise 413/429 unless a request of `cost` estimated seconds (`small`: one batch of work or less) can
        finish by `deadline`."""
        if not self._measured or deadline is None or timeout is None:
            return
        if cost > timeout * ADMIT_SHARE and self._work <= 0:  # alone, on an idle model: never fits
            raise PayloadTooLarge(
                None,
                f"This request needs about {cost:.1f} s of inference on model {self.name!r} at its measured "
                f"speed, more than the server's {timeout:g} s request timeout allows; send fewer or shorter inputs "
                "per request.",
                param="input",
            )
        live = [j for j in self._pending if not j.future.done()]
        running = self._work - sum(j.untaken_cost for j in live)
        if small:  # small requests go first: only the small work ahead and what runs
            ahead = running + sum(j.untaken_cost for j in live if self._size_class(j.untaken_padded) == 0) + cost
            room = (deadline - now) * ADMIT_SHARE
        else:
            # Larger requests run first come first served after the small ones, so everything queued is ahead of
            # this one, and the small requests arriving while it waits and runs (at their recent rate) take
            # their share of the model first: admitted, it can finish, and it is never refused later.
            ahead = running + sum(j.untaken_cost for j in live) + cost
            room = self._large_room(now, deadline)
        if ahead > room:
            raise Overloaded(
                f"Model {self.name!r} has about {self._work:.1f} s of work queued; this request could not "
                f"finish within the {timeout:g} s request timeout. Retry after the Retry-After seconds.",
                retry_after=self._drain_seconds(ahead - max(room, 0.0)),
            )

    def _large_room(self, now: float, deadline: float) -> float:
        """Seconds of work a request larger than one batch may find ahead of it, its own included, and still finish
        by `deadline`: the model's share until then, less what the small requests arriving meanwhile take first."""
        return (deadline - now) * (ADMIT_SHARE - self._small_share(now))

    def _small_share(self, now: float) -> float:
        """The share of the model's time spent on small requests over the last SMALL_WINDOW seconds."""
        while self._small and self._small[0][0] < now - SMALL_WINDOW:
            self._small.popleft()
        return sum(work for _, work in self._small) / SMALL_WINDOW

    def _size_class(self, padded: float) -> int:
        """0 for `padded` tokens that fit one batch (max_batch_tokens), then one class per doubling. Small (class 0) goes
        first, then the rest; first come first served within each: exact shortest-first would starve a 20-token
        query behind a stream of 10-token ones."""
        return max(0, math.ceil(math.log2(max(padded, 1.0) / self._batch_tokens)))

    def _release(self, job: Job) -> None:
        """Forget the inputs of `job` that will not run."""
        self._in_system -= len(job.encodings) - job.taken
        self._work -= job.untaken_cost
        job.cost_left -= job.untaken_cost
        job.taken = len(job.encodings)

    # ----- gathering ----------------------------------------------------------------------------------------
    def _waiting_inputs(self) -> int:
        return sum(len(j.encodings) - j.taken for j in self._pending)

    def _refuse_late(self, now: float) -> None:
        """Refuse (429) every untouched request that cannot finish by its deadline any more."""
        if not self._measured:
            return
        for job in self._pending:
            if job.taken == 0 and job.deadline is not None and now + job.untaken_cost > job.deadline:
                self._release(job)
                job.future.set_exception(Overloaded(
                    f"Model {self.name!r} is overloaded: this request could no longer finish within the "
                    f"{job.timeout:g} s request timeout, so it was not started.",
                    retry_after=self._drain_seconds(self._work),
                ))

    def _urgent(self, job: Job, now: float) -> bool:
        if not self._measured or job.deadline is None or job.timeout is None:
            return False
        return job.deadline - now - 2 * job.untaken_cost < job.timeout * URGENT_SLACK

    def _critical(self, job: Job, now: float) -> bool:
        assert job.deadline is not None
        return job.deadline - now < 1.5 * job.untaken_cost

    def _take(self) -> list[tuple[Job, int, int]]:
        """(job, first row, end row) pieces of one batch: the head job's key, at most max_items inputs."""
        now = time.monotonic()
        urgent = [j for j in self._pending if self._urgent(j, now)]
        critical = [j for j in urgent if j.taken > 0 and self._critical(j, now)]
        self._turn += 1
        if critical and (self._turn % CRITICAL_TURNS or len(critical) == len(self._pending)):
            # started, and only finishes in time with (nearly) every batch: it gets them, but one in
            # CRITICAL_TURNS still goes to the shortest request, so a one-text request never waits for all of it
            order = sorted(critical, key=lambda j: j.deadline or 0.0) + [j for j in self._pending if j not in critical]
            self._last_urgent = True
        elif urgent and not (self._last_urgent and len(urgent) < len(self._pending)):
            order = sorted(urgent, key=lambda j: j.deadline or 0.0) + [j for j in self._pending if j not in urgent]
            self._last_urgent = True
        else:
            order = sorted(self._pending, key=lambda j: (self._size_class(j.untaken_padded) > 0, j.arrived))
            self._last_urgent = False
        head = order[0]
        if head.call is not None:
            picks = [(head, 0, len(head.encodings))]
            head.taken = len(head.encodings)
        else:
            picks = []
            room = self.max_items
            # About one planned batch of work per take (max_batch_tokens), so a request of many long inputs is
            # run a batch at a time and shorter requests get their turn between its batches.
            budget = float(self.max_tokens) if self.max_tokens else float("inf")
            for job in order:
                if room == 0 or budget <= 0 or job.call is not None or (
                    picks and (job.key != head.key or not self.merge)
                ):
                    continue
                costs = np.cumsum(job.padded[job.taken : job.taken + room])
                take = max(1 if not picks else 0, int(np.searchsorted(costs, budget, side="right")))
                if take == 0:
                    continue
                picks.append((job, job.taken, job.taken + take))
                job.taken += take
                room -= take
                budget -= float(costs[take - 1])
        self._pending = [j for j in self._pending if j.taken < len(j.encodings)]
        return picks

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [j for j in self._pending if not j.future.done()]
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.monotonic()
            age = now - min(j.arrived for j in self._pending)
            if self.merge and age < self.wait_s and self._waiting_inputs() < self.max_items:
                await asyncio.sleep(self.wait_s - age)
                continue
            self._refuse_late(now)
            self._pending = [j for j in self._pending if not j.future.done()]
            if not self._pending:
                continue
            picks = self._take()
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
        head = picks[0][0]
        if head.call is not None:
            rows = head.call()
            padded, groups = int(sum(len(e.ids) for e in head.encodings)), 1
        else:
            encodings = [enc for job, a, b in picks for enc in job.encodings[a:b]]
            rows = [None] * len(encodings)
            padded = 0
            lengths = token_lengths(encodings)
            plan = split_by_length(self.model.plan(encodings, self.max_items), lengths)
            groups = len(plan)
            for idx in plan:
                batch = self.model.pad([encodings[i] for i in idx])
                padded += int(batch.input_ids.size)
                out = self.model.forward(batch, **head.options)
                for row, i in enumerate(idx):
                    rows[i] = out[row]
        seconds = time.perf_counter() - start
        self.record_speed(groups, padded, seconds)
        shares = [(job.small, float(job.padded[a:b].sum())) for job, a, b in picks]
        small = sum(tokens for is_small, tokens in shares if is_small)
        if small and self._loop is not None:
            spent = (time.monotonic(), seconds * small / sum(tokens for _, tokens in shares))
            self._loop.call_soon_threadsafe(self._small.append, spent)
        if self.observe is not None:
            self.observe(len(rows), padded, seconds)
        pieces, at = [], 0
        for _, a, b in picks:
            pieces.append(rows[at : at + b - a])
            at += b - a
        return pieces

    def _deliver(self, picks: list[tuple[Job, int, int]], results: list[Any]) -> None:
        for (job, a, b), rows in zip(picks, results):
            self._in_system -= b - a
            piece_cost = float(job.unit[a:b].sum())
            self._work -= piece_cost
            job.cost_left -= piece_cost
            if job.future.done():
                continue
            if isinstance(rows, BaseException):
                self._release(job)  # its other inputs will not run
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

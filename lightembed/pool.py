"""sentence-transformers' multi-process pool for lightembed models: worker processes that each hold the model
once and run its own encode()/predict() on chunks of a call.

`model.start_multi_process_pool(target_devices)` starts one worker per entry: "cpu" workers are pinned
(`os.sched_setaffinity`) to their own share of this process's cores and use that many intra-op threads, so k
workers never oversubscribe the machine; "cuda:N" workers run on GPU N. The pool is the dict
sentence-transformers returns ("input", "output", "processes") and a context manager. Workers start with
`spawn` (onnxruntime's thread pools do not survive fork) and are reported ready before the call returns, so a
model that cannot load fails there. A worker that dies fails the call with an error naming it; results come
back in input order; closing the pool (or the parent's exit or death) leaves no process behind.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import pickle
import queue
import time
import traceback
import weakref
from typing import Any, Sequence

import numpy as np

from lightembed import machine
from lightembed.errors import LightembedTypeError, LightembedValueError, PoolError, kind

# Parent-side poll interval while waiting on workers: how quickly a dead worker is noticed.
_POLL_S = 0.2
_STOP_TIMEOUT_S = 5.0
# Exceptions re-raised with their own type in the caller; others become RuntimeError (their type is named).
_PASS_THROUGH = {"ValueError": ValueError, "TypeError": TypeError, "KeyError": KeyError, "IndexError": IndexError}


def default_target_devices() -> list[str]:
    """One worker per GPU when onnxruntime has CUDA; on CPU, a single worker with all the cores.

    One process x all cores measured as fast as or faster than k processes x cores/k threads on the benchmark
    corpus (benchmarks/pool.py; benchmarks/RESULTS.md, "Multi-process pool"), so the CPU default adds no
    processes; pass ["cpu"] * k to split the cores anyway.
    """
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return [f"cuda:{i}" for i in range(max(1, machine.gpu_count()))]
    return ["cpu"]


def cpu_shares(n_workers: int, cores: Sequence[int] | None = None) -> list[list[int]]:
    """The cores each of `n_workers` CPU workers is pinned to: contiguous, near-equal shares of `cores` (default:
    this process's affinity); with more workers than cores, workers share single cores round-robin."""
    if cores is None:
        cores = machine.affinity()
    cores = list(cores)
    if n_workers <= len(cores):
        return [[int(c) for c in part] for part in np.array_split(np.array(cores), n_workers)]
    return [[cores[i % len(cores)]] for i in range(n_workers)]


def _check_devices(target_devices: Sequence[str]) -> list[str]:
    if isinstance(target_devices, str) or not isinstance(target_devices, (list, tuple)):
        raise LightembedTypeError(f"target_devices must be a list such as ['cpu', 'cpu'] or ['cuda:0', 'cuda:1'], got {target_devices!r}.")
    if not target_devices:
        raise LightembedValueError("target_devices is empty: give at least one device.")
    devices = []
    for device in target_devices:
        name = str(device).lower()
        kind, _, index = name.partition(":")
        if not (name == "cpu" or (kind == "cuda" and (index == "" or index.isdigit()))):
            raise LightembedValueError(f"Unsupported pool device {device!r}: use 'cpu', 'cuda' or 'cuda:N'.")
        devices.append("cuda:0" if name == "cuda" else name)
    return devices


def _model_state(model: Any) -> dict[str, Any]:
    """Everything the model holds except its open graph, which each worker opens again from the same file."""
    state = model.state_without_graph()
    for key, value in state.items():
        try:
            pickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing here
            raise LightembedTypeError(
                f"{type(model).__name__}.{key} ({type(value).__name__}) cannot be sent to pool workers: {exc}. "
                "Use a picklable value (e.g. a named function, not a lambda)."
            ) from None
    return state


def _worker(
    index: int,
    device: str,
    cores: list[int] | None,
    threads: int,
    cls: Any,
    state: dict[str, Any],
    io_binding: bool,
    tasks: Any,
    results: Any,
    cancelled: Any,
) -> None:
    """A worker's life: pin, load the model once, then run (call, chunk) tasks until the None sentinel, or stop
    when the parent is gone."""
    try:
        if cores is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
        started = time.perf_counter()
        model = cls.from_state(state, device, threads, io_binding)
        results.put(("ready", index, os.getpid(), time.perf_counter() - started))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("failed", index, f"{kind(exc)}: {exc}"))
        return
    parent = mp.parent_process()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if task is None:
            return
        call_id, chunk_id, method, items, kwargs = task
        if call_id <= cancelled.value:
            continue
        try:
            out = getattr(model, method)(items, **kwargs)
            results.put(("ok", call_id, chunk_id, out))
        except Exception as exc:  # noqa: BLE001 - sent back and raised in the caller
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            results.put(("error", call_id, chunk_id, kind(exc), str(exc), detail))


def _shutdown(processes: list[Any], tasks: Any, results: Any) -> None:
    """Stop workers: the sentinel first, then terminate, then kill; close the queues without blocking."""
    for p in processes:
        if p.is_alive():
            try:
                tasks.put_nowait(None)
            except Exception:  # noqa: BLE001 - a closed or full queue: terminate below
                pass
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.terminate()
            p.join(2.0)
        if p.is_alive():
            p.kill()
            p.join()
    for q in (tasks, results):
        q.cancel_join_thread()
        q.close()


MAIN_GUARD = (
    'A multi-process pool was started by the top-level code of the script {script} (line {line}). Its workers '
    'start with "spawn", which runs the script again in each worker, so they would start pools of their own. '
    'Put the code that starts the pool (and uses it) under `if __name__ == "__main__":`.'
)


def _check_main_guard() -> None:
    """PoolError when the pool is being started by a script's unguarded top-level code (spawned workers would
    re-run it), found from the call stack and the script's syntax tree."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if mp.parent_process() is not None and getattr(main, "__name__", "") == "__mp_main__":
        raise PoolError(MAIN_GUARD.format(script=path, line="?"))  # in a worker re-running the script
    if not path or not os.path.isfile(path):
        return  # interactive, -c, notebooks: nothing is re-run
    frame: Any = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"):
        frame = frame.f_back
    if frame is None or os.path.abspath(frame.f_code.co_filename) != os.path.abspath(path):
        return
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.lineno <= line <= (node.end_lineno or 0):
            return
    raise PoolError(MAIN_GUARD.format(script=path, line=line))


def _is_main_test(test: Any) -> bool:
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


class MultiProcessPool(dict):
    """Worker processes holding one model; `pool["input"]`, `pool["output"]`, `pool["processes"]` as in
    sentence-transformers. Use as a context manager, or call `close()` (= stop_multi_process_pool)."""

    def __init__(self, model: Any, target_devices: Sequence[str] | None = None) -> None:
        _check_main_guard()
        devices = _check_devices(default_target_devices() if target_devices is None else target_devices)
        cpu_workers = [i for i, d in enumerate(devices) if d == "cpu"]
        shares = cpu_shares(len(cpu_workers)) if cpu_workers else []
        # A cgroup CPU quota can be smaller than the affinity set: threads never exceed each worker's share of it.
        per_worker = max(1, machine.usable_cores() // max(1, len(devices)))
        state = _model_state(model)
        io_binding = bool(getattr(model._graph, "io_binding", False))
        ctx = mp.get_context("spawn")
        tasks, results = ctx.Queue(), ctx.Queue()
        self._cancelled = ctx.Value("q", 0, lock=False)
        self.devices = devices
        self.model_class = type(model)
        self.onnx_path = model.onnx_path
        self.cores: list[list[int] | None] = []
        processes = []
        self._closed = False
        self._broken: str | None = None
        self._calls = itertools.count(1)
        started = time.perf_counter()
        for i, device in enumerate(devices):
            cores = shares[cpu_workers.index(i)] if device == "cpu" else None
            threads = min(len(cores), per_worker) if cores is not None else per_worker
            self.cores.append(cores)
            p = ctx.Process(
                target=_worker,
                args=(i, device, cores, threads, type(model), state, io_binding, tasks, results, self._cancelled),
                name=f"lightembed-pool-{i}-{device}",
                daemon=True,
            )
            p.start()
            processes.append(p)
        super().__init__(input=tasks, output=results, processes=processes)
        self._finalizer = weakref.finalize(self, _shutdown, processes, tasks, results)
        self.load_seconds: list[float] = [0.0] * len(devices)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.perf_counter() - started
        """Seconds from the start call until every worker had its model loaded (spawn + import + load)."""

    def _name(self, index: int) -> str:
        p = self["processes"][index]
        return f"pool worker {index} ({self.devices[index]}, pid {p.pid})"

    def _dead_worker(self) -> str | None:
        for i, p in enumerate(self["processes"]):
            if not p.is_alive():
                return f"{self._name(i)} died (exit code {p.exitcode})"
        return None

    def _wait_ready(self) -> None:
        waiting = set(range(len(self.devices)))
        while waiting:
            try:
                msg = self["output"].get(timeout=_POLL_S)
            except queue.Empty:
                dead = self._dead_worker()
                if dead:
                    raise PoolError(f"{dead} while loading the model.") from None
                continue
            if msg[0] == "failed":
                raise PoolError(f"{self._name(msg[1])} could not load the model: {msg[2]}")
            if msg[0] == "ready":
                waiting.discard(msg[1])
                self.load_seconds[msg[1]] = msg[3]

    @property
    def closed(self) -> bool:
        return self._closed

    def check_model(self, model: Any) -> None:
        """Refuse a pool started from another model class or ONNX file than `model`."""
        if self._broken:
            raise PoolError(f"This multi-process pool is broken ({self._broken}); start a new one.")
        if self._closed:
            raise LightembedValueError("This multi-process pool was stopped; start a new one with start_multi_process_pool().")
        if type(model) is not self.model_class or model.onnx_path != self.onnx_path:
            raise LightembedValueError(
                f"This pool runs {self.model_class.__name__} on {self.onnx_path}; it cannot serve "
                f"{type(model).__name__} on {model.onnx_path}. Start a pool from this model."
            )

    def map_chunks(
        self,
        method: str,
        items: Sequence[Any],
        kwargs: dict[str, Any],
        chunk_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> list[Any]:
        """Run `model.<method>(chunk, **kwargs)` on the workers for consecutive chunks of `items`; the per-chunk
        results, in input order. Default chunk size as sentence-transformers: about 10 chunks per worker, at
        most 5000 items."""
        if chunk_size is None:
            chunk_size = max(1, min(math.ceil(len(items) / len(self.devices) / 10), 5000))
        elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise LightembedValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        chunk_size = int(chunk_size)
        dead = self._dead_worker()
        if dead:
            self._broken = dead
            self.close()
            raise PoolError(f"{dead}; the pool is stopped, start a new one.")
        call_id = next(self._calls)
        n_chunks = math.ceil(len(items) / chunk_size)
        for chunk_id in range(n_chunks):
            chunk = list(items[chunk_id * chunk_size : (chunk_id + 1) * chunk_size])
            self["input"].put((call_id, chunk_id, method, chunk, kwargs))
        out: list[Any] = [None] * n_chunks
        from lightembed.progress import progress

        bar = progress(range(n_chunks), bool(show_progress_bar), "Chunks", total=n_chunks)
        bar_iter = iter(bar)
        done = 0
        try:
            while done < n_chunks:
                try:
                    msg = self["output"].get(timeout=_POLL_S)
                except queue.Empty:
                    dead = self._dead_worker()
                    if dead:
                        self._broken = dead
                        raise PoolError(f"{dead} during {method}(); the pool is stopped.") from None
                    continue
                if msg[0] not in ("ok", "error") or msg[1] != call_id:
                    continue  # a chunk of an earlier, failed call
                if msg[0] == "error":
                    _, _, chunk_id, kind, text, detail = msg
                    first = chunk_id * chunk_size
                    where = f"in chunk {chunk_id}, items {first}..{min(first + chunk_size, len(items)) - 1}"
                    exc_type = _PASS_THROUGH.get(kind)
                    if exc_type is not None:
                        raise exc_type(f"{text} [{method}() {where}]")
                    raise PoolError(f"A pool worker raised {detail} [{method}() {where}]")
                out[msg[2]] = msg[3]
                done += 1
                next(bar_iter, None)
        except BaseException:
            self._cancelled.value = call_id  # workers skip this call's remaining chunks
            if self._broken:
                self.close()
            raise
        finally:
            if hasattr(bar, "close"):
                bar.close()
        return out

    def close(self) -> None:
        """Stop the workers and release the queues (idempotent)."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> "MultiProcessPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"MultiProcessPool({self.model_class.__name__}, devices={self.devices}, cores={self.cores}, {state})"

    # A dict subclass would otherwise compare by content and be unhashable; a pool is one thing.
    __hash__ = object.__hash__  # type: ignore[assignment]  # dict sets it to None

    def __eq__(self, other: object) -> bool:
        return self is other

    def __reduce__(self) -> Any:
        raise LightembedTypeError("A multi-process pool cannot be pickled or sent to another process.")


def _pool_for(model: Any, pool: Any, device: Any) -> tuple[MultiProcessPool, bool]:
    """The pool to run on, and whether this call started it (device=[...] without a pool, as in
    sentence-transformers) and must stop it."""
    if pool is None:
        return MultiProcessPool(model, list(device)), True
    if not isinstance(pool, MultiProcessPool):
        raise LightembedTypeError(
            f"pool must be the object start_multi_process_pool() returned, got {type(pool).__name__}."
        )
    pool.check_model(model)
    return pool, False


def pooled_call(
    model: Any,
    method: str,
    items: list[Any],
    pool: Any,
    device: Any,
    chunk_size: int | None,
    show_progress_bar: bool | None,
    kwargs: dict[str, Any],
) -> list[Any]:
    """Per-chunk results of `model.<method>` over `items` on `pool` (or a pool for the `device` list)."""
    pool, owned = _pool_for(model, pool, device)
    try:
        return pool.map_chunks(method, items, dict(kwargs, show_progress_bar=False), chunk_size, show_progress_bar)
    finally:
        if owned:
            pool.close()


def concat(parts: list[Any]) -> Any:
    """Join per-chunk results: arrays along the first axis, lists end to end."""
    if parts and isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=0)
    return list(itertools.chain.from_iterable(parts))


def encode_embeddings(
    model: Any,
    inputs: Any,
    pool: Any,
    device: Any,
    chunk_size: int | None,
    kwargs: dict[str, Any],
    *,
    show_progress_bar: bool | None,
    precision: str,
    convert_to_numpy: bool,
    convert_to_tensor: bool,
    truncate_dim: int | None,
    **encode_kwargs: Any,
) -> Any:
    """SentenceTransformer.encode(pool=...): workers return float32 and quantization runs here on the whole
    result, so int8/uint8 ranges are those of the call, exactly as without a pool."""
    from lightembed.inputs import as_text_list, check_precision, check_truncate_dim

    model._check_call("encode()", None, kwargs)
    texts, single = as_text_list(inputs)
    check_precision(precision)
    truncate_dim = check_truncate_dim(truncate_dim) or model.truncate_dim
    encode_kwargs.update(precision="float32", convert_to_numpy=True, truncate_dim=truncate_dim)
    if not texts:
        return model.encode(texts, show_progress_bar=False, **dict(encode_kwargs, precision=precision))
    parts = pooled_call(model, "encode", texts, pool, device, chunk_size, show_progress_bar, encode_kwargs)
    out = concat(parts)
    if encode_kwargs.get("output_value") != "sentence_embedding":
        return out[0] if single else out
    return model._finish(out, single, precision, convert_to_numpy or convert_to_tensor, truncate_dim)


def encode_sparse(
    model: Any,
    inputs: Any,
    pool: Any,
    device: Any,
    chunk_size: int | None,
    kwargs: dict[str, Any],
    *,
    show_progress_bar: bool | None,
    convert_to_tensor: bool,
    convert_to_sparse_tensor: bool,
    **encode_kwargs: Any,
) -> Any:
    """SparseEncoder.encode(pool=...): workers return SparseVector rows; the output form is made here."""
    from lightembed.inputs import as_text_list

    model._check_call("encode()", None, kwargs)
    texts, single = as_text_list(inputs)
    encode_kwargs.update(convert_to_tensor=False, convert_to_sparse_tensor=True)
    rows = concat(pooled_call(model, "encode", texts, pool, device, chunk_size, show_progress_bar, encode_kwargs))
    return model._finish(rows, single, convert_to_tensor, convert_to_sparse_tensor)


def predict_scores(
    model: Any,
    inputs: Any,
    pool: Any,
    device: Any,
    chunk_size: int | None,
    kwargs: dict[str, Any],
    *,
    show_progress_bar: bool | None,
    convert_to_numpy: bool,
    convert_to_tensor: bool,
    **predict_kwargs: Any,
) -> Any:
    """CrossEncoder.predict(pool=...): workers return score arrays, joined here in input order."""
    from lightembed.inputs import as_pairs

    model._check_call("predict()", None, kwargs)
    pairs, single = as_pairs(inputs)
    predict_kwargs.update(convert_to_numpy=True)
    if not pairs:
        return model.predict(pairs, convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor, **predict_kwargs)
    scores = concat(pooled_call(model, "predict", pairs, pool, device, chunk_size, show_progress_bar, predict_kwargs))
    if single:
        return scores[0]
    return scores if convert_to_tensor or convert_to_numpy else list(scores)

"""The multi-process pool (lightembed/pool.py): sentence-transformers' start/encode(pool=)/stop API on the three
model classes, results equal to a plain call and in input order, pinned CPU workers, a dead worker named in a
prompt error (never a hang), and no process left behind."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import psutil
import pytest

from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
from lightembed.pool import MultiProcessPool, PoolError, cpu_shares, default_target_devices
from tests.test_cross_encoder import PAIRS, make_ce
from tests.test_sparse_encoder import TEXTS as SPARSE_TEXTS
from tests.test_sparse_encoder import make_splade
from tests.tiny import WORDS, make_model

TEXTS = [" ".join(WORDS[(i * 7) % len(WORDS) : (i * 7) % len(WORDS) + 1 + i % 9]) + f" {i}" for i in range(97)]


def exit_in_worker(logits: np.ndarray) -> np.ndarray:
    """An activation that is the identity in the test process and ends any other process at once (no exception,
    no cleanup), as a crash would. Module-level so spawned workers can unpickle it."""
    if os.environ.get("LIGHTEMBED_TEST_PARENT") != str(os.getpid()):
        os._exit(7)
    return logits


def same(got, want) -> None:
    """Equal up to float32 rounding: chunks batch texts differently, and padding to another length changes the
    order of the float sums by an ulp or so."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    else:  # quantized: a value on a bucket edge may land one step away
        assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max(initial=0) <= 1


def workers_alive() -> set[int]:
    """Pids of this process's live spawned workers (multiprocessing's resource tracker is not a worker)."""
    pids = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                pids.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def call_with_deadline(fn, seconds: float):
    """Run fn in a thread; fail the test (instead of hanging it) if it has not returned within `seconds`."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"call still running after {seconds}s: the pool hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    return SentenceTransformer(make_model(tmp_path_factory.mktemp("pool") / "tiny"))


@pytest.fixture(scope="module")
def st_pool(st):
    with st.start_multi_process_pool(["cpu", "cpu"]) as pool:
        yield pool


def test_encode_with_pool_equals_plain_encode_in_input_order(st, st_pool):
    plain = st.encode(TEXTS)
    for chunk_size in (None, 1, 10, 1000):
        got = st.encode(TEXTS, pool=st_pool, chunk_size=chunk_size)
        same(got, plain)
    same(st.encode(TEXTS[5], pool=st_pool), plain[5])
    same(st.encode_multi_process(TEXTS, st_pool, chunk_size=13), plain)


def test_pool_keeps_every_encode_option(st, st_pool):
    for kwargs in (
        dict(precision="int8"),  # ranges of the whole call, not of each chunk
        dict(precision="ubinary"),
        dict(normalize_embeddings=True, truncate_dim=4),
        dict(prompt="query "),
    ):
        same(st.encode(TEXTS, pool=st_pool, chunk_size=8, **kwargs), st.encode(TEXTS, **kwargs))
    listed = st.encode(TEXTS[:9], pool=st_pool, chunk_size=2, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 9
    same(np.stack(listed), st.encode(TEXTS[:9]))
    tokens = st.encode(TEXTS[:9], pool=st_pool, chunk_size=2, output_value="token_embeddings")
    for got, want in zip(tokens, st.encode(TEXTS[:9], output_value="token_embeddings")):
        same(got, want)
    assert st.encode([], pool=st_pool).shape == (0, 8)


def test_cpu_workers_are_pinned_to_their_own_cores(st_pool):
    parent = set(os.sched_getaffinity(0))
    seen: list[int] = []
    for proc, cores in zip(st_pool["processes"], st_pool.cores):
        affinity = psutil.Process(proc.pid).cpu_affinity()
        assert sorted(affinity) == sorted(cores)
        seen.extend(affinity)
    assert set(seen) <= parent
    if len(parent) >= 2:
        assert len(seen) == len(set(seen)), "two workers share a core"
    assert cpu_shares(3, [0, 1, 2, 3, 4, 5, 6]) == [[0, 1, 2], [3, 4], [5, 6]]
    assert cpu_shares(3, [4, 5]) == [[4], [5], [4]]


def test_bad_input_and_wrong_use_fail_clearly(st, st_pool, tmp_path):
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a string"):
        st.encode(["ok", 3], pool=st_pool)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        st.encode(TEXTS, pool=st_pool, chunk_size=0)
    with pytest.raises(ValueError, match="does not use"):
        st.encode(TEXTS, pool=st_pool, colour="red")
    with pytest.raises(TypeError, match="start_multi_process_pool"):
        st.encode(TEXTS, pool={"input": None, "output": None, "processes": []})
    other = SentenceTransformer(make_model(tmp_path / "other", onnx_path="model.onnx"))
    with pytest.raises(ValueError, match="cannot serve"):
        other.encode(TEXTS, pool=st_pool)
    with pytest.raises(ValueError, match="Unsupported pool device"):
        st.start_multi_process_pool(["tpu"])
    same(st.encode(TEXTS, pool=st_pool), st.encode(TEXTS))  # still usable


def test_device_list_runs_a_temporary_pool_and_stops_it(st):
    before = workers_alive()
    got = st.encode(TEXTS, device=["cpu", "cpu"], chunk_size=5)
    same(got, st.encode(TEXTS))
    assert workers_alive() <= before


def test_stop_leaves_no_process_and_refuses_further_calls(st):
    pool = st.start_multi_process_pool(["cpu", "cpu"])
    assert isinstance(pool, MultiProcessPool) and set(pool) == {"input", "output", "processes"}
    pids = [p.pid for p in pool["processes"]]
    assert all(psutil.pid_exists(pid) for pid in pids)
    st.stop_multi_process_pool(pool)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    with pytest.raises(ValueError, match="was stopped"):
        st.encode(TEXTS, pool=pool)
    st.stop_multi_process_pool(pool)  # idempotent


def test_a_killed_worker_is_named_and_never_hangs(st):
    before = workers_alive()
    with st.start_multi_process_pool(["cpu", "cpu"]) as pool:
        victim = pool["processes"][1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        with pytest.raises(PoolError, match=rf"pool worker 1 \(cpu, pid {victim.pid}\) died \(exit code -9\)"):
            call_with_deadline(lambda: st.encode(TEXTS, pool=pool), 30)
        with pytest.raises(PoolError, match="broken"):
            st.encode(TEXTS, pool=pool)
    assert workers_alive() <= before


def test_a_worker_dying_mid_call_fails_the_call(tmp_path, monkeypatch):
    before = workers_alive()
    monkeypatch.setenv("LIGHTEMBED_TEST_PARENT", str(os.getpid()))
    ce = CrossEncoder(make_ce(tmp_path / "ce"), activation_fn=exit_in_worker)
    ce.predict(PAIRS)  # the parent's own calls are unaffected
    with ce.start_multi_process_pool(["cpu", "cpu"]) as pool:
        with pytest.raises(PoolError, match=r"pool worker \d \(cpu, pid \d+\) died \(exit code 7\) during predict"):
            call_with_deadline(lambda: ce.predict(PAIRS * 4, pool=pool, chunk_size=1), 30)
    assert workers_alive() <= before


def test_a_worker_that_cannot_load_fails_the_start(st):
    before = workers_alive()
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("needs a machine without CUDA, where a cuda:0 worker cannot load")
    with pytest.raises(PoolError, match=r"pool worker 1 \(cuda:0, pid \d+\) could not load the model: ValueError: CUDA"):
        st.start_multi_process_pool(["cpu", "cuda:0"])
    assert workers_alive() <= before
    assert default_target_devices() == ["cpu"]


def test_sparse_encoder_and_cross_encoder_accept_a_pool(tmp_path):
    before = workers_alive()
    sparse = SparseEncoder(make_splade(tmp_path / "splade"))
    texts = SPARSE_TEXTS * 5
    ce = CrossEncoder(make_ce(tmp_path / "ce3", 3))
    with sparse.start_multi_process_pool(["cpu", "cpu"]) as sp_pool:
        got = sparse.encode(texts, pool=sp_pool, chunk_size=4)
        want = sparse.encode(texts)
        same(got.toarray(), want.toarray())
        same(sparse.encode(texts, pool=sp_pool, convert_to_sparse_tensor=False), want.toarray())
        assert sparse.encode(texts[3], pool=sp_pool).indices.tolist() == want[3].indices.tolist()
        with pytest.raises(ValueError, match="cannot serve"):
            ce.predict(PAIRS, pool=sp_pool)
    with ce.start_multi_process_pool(["cpu"]) as ce_pool:
        same(ce.predict(PAIRS * 3, pool=ce_pool, chunk_size=2), ce.predict(PAIRS * 3))
        same(
            ce.predict(PAIRS * 3, pool=ce_pool, apply_softmax=True), ce.predict(PAIRS * 3, apply_softmax=True)
        )
        same(ce.predict(PAIRS[1], pool=ce_pool), ce.predict(PAIRS[1]))
    assert workers_alive() <= before


# ----- a script without `if __name__ == "__main__":` (issue 24) ---------------------------------------------------
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
def test_a_pool_started_by_unguarded_script_code_is_a_clear_error(tmp_path, guarded):
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    folder = make_model(tmp_path / "m")
    body = textwrap.dedent(f"""
        from lightembed import SentenceTransformer
        model = SentenceTransformer({str(folder)!r})
        def run():
            with model.start_multi_process_pool(["cpu", "cpu"]) as pool:
                print("shape", model.encode(["a", "b", "c"], pool=pool).shape)
    """)
    body += 'if __name__ == "__main__":\n    run()\n' if guarded else "run()\n"
    script = tmp_path / "script.py"
    script.write_text(body)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(root)})
    if guarded:
        assert out.returncode == 0 and "shape (3, " in out.stdout, out.stderr
    else:
        assert out.returncode == 1
        assert 'under `if __name__ == "__main__":`' in out.stderr and f"{script} (line 7)" in out.stderr
        assert out.stderr.count("Traceback") == 1  # the parent's error only: no worker was started

"""Provider choice and thread count."""

from __future__ import annotations

import os
import warnings

import onnxruntime as ort
import pytest

from lightembed.graphs.providers import CPU, CUDA, resolve_providers
from lightembed.machine import usable_cores


def test_default_never_picks_another_provider_implicitly():
    providers = resolve_providers(None, None)
    expected = [(CUDA, {"device_id": 0, "use_tf32": 0}), CPU] if CUDA in ort.get_available_providers() else [CPU]
    assert providers == expected


def test_cpu_device():
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers("CPU") == [CPU]


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_provider_says_why(device):
    with pytest.raises(ValueError, match="CUDAExecutionProvider") as info:
        resolve_providers(device)
    assert "onnxruntime" in str(info.value)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_providers(None, ["CUDAExecutionProvider"])


@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="no CUDA provider in this onnxruntime")
def test_cuda_device_index():
    assert resolve_providers("cuda:1")[0] == (CUDA, {"device_id": 1, "use_tf32": 0})


def test_invalid_devices_and_providers():
    with pytest.raises(ValueError, match="cuda:x"):
        resolve_providers("cuda:x")
    with pytest.raises(TypeError):
        resolve_providers(3)
    with pytest.raises(ValueError, match="NopeExecutionProvider"):
        resolve_providers(None, ["NopeExecutionProvider"])
    with pytest.raises(ValueError, match="at least one"):
        resolve_providers(None, [])


def test_usable_cores_respects_affinity():
    cores = usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cores <= len(os.sched_getaffinity(0))


def test_threads_reach_the_session(tiny_model):
    from lightembed import SentenceTransformer

    model = SentenceTransformer(tiny_model, threads=1)
    assert model._graph.session.get_session_options().intra_op_num_threads == 1
    default = SentenceTransformer(tiny_model)
    assert default._graph.session.get_session_options().intra_op_num_threads == usable_cores()


# ----- threads follow a cgroup CPU quota (the cgroup files are faked) --------------------------------------
def _fake_cgroup(monkeypatch, tmp_path, files: dict[str, str], cores: int = 8) -> None:
    """Serve `files` (paths under /sys/fs/cgroup) from tmp_path and pretend `cores` CPUs are in the affinity."""
    import lightembed.machine as sessions

    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    real_path = sessions.Path

    def path(p, *rest):
        text = str(p)
        if text.startswith("/sys/fs/cgroup"):
            return real_path(text.replace("/sys/fs/cgroup", str(root), 1), *rest)
        return real_path(p, *rest)

    monkeypatch.setattr(sessions, "Path", path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs -> 2 threads
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU -> still 1
        ({"cpu.max": "1600000 100000\n"}, 8),  # more quota than affinity: the affinity
        ({"cpu.max": "max 100000\n"}, 8),  # no limit
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 8),  # v1, no limit
        ({}, 8),  # no cgroup files
    ],
)
def test_usable_cores_follow_a_cgroup_cpu_quota(monkeypatch, tmp_path, files, cores):
    _fake_cgroup(monkeypatch, tmp_path, files)
    assert usable_cores() == cores


def test_default_threads_follow_a_cgroup_cpu_quota(monkeypatch, tmp_path, tiny_model):
    from lightembed import SentenceTransformer

    _fake_cgroup(monkeypatch, tmp_path, {"cpu.max": "250000 100000\n"})
    model = SentenceTransformer(tiny_model)
    assert model.runtime_info.intra_op_threads == 3
    assert SentenceTransformer(tiny_model, threads=5).runtime_info.intra_op_threads == 5  # explicit wins


# ----- CUDA never falls back silently (onnxruntime's provider list is faked) -----------------------------
def _offer(monkeypatch, providers: list[str]) -> None:
    import lightembed.graphs.onnxruntime as sessions

    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: list(providers))


def test_default_device_picks_cuda_only_when_offered_and_never_another_provider(monkeypatch):
    _offer(monkeypatch, [CUDA, CPU])
    assert resolve_providers(None) == [(CUDA, {"device_id": 0, "use_tf32": 0}), CPU]
    assert resolve_providers("cuda:2") == [(CUDA, {"device_id": 2, "use_tf32": 0}), CPU]
    _offer(monkeypatch, ["TensorrtExecutionProvider", "OpenVINOExecutionProvider", "DmlExecutionProvider", CPU])
    assert resolve_providers(None) == [CPU]
    with pytest.raises(ValueError, match="CUDAExecutionProvider"):
        resolve_providers("cuda")


def test_cuda_requested_but_the_session_falls_back_to_cpu_is_an_error(monkeypatch, tiny_model):
    """onnxruntime lists CUDA but cannot load it (missing libraries, no GPU): it falls back to CPU with only a
    warning. lightembed must refuse, for device="cuda", "cuda:N", None (auto) and providers=[...CUDA...]."""
    from lightembed import SentenceTransformer

    _offer(monkeypatch, [CUDA, CPU])  # the real session on this CPU-only onnxruntime then falls back to CPU
    cases = [({"device": "cuda"}, 0), ({"device": "cuda:1"}, 1), ({}, 0), ({"providers": [CUDA, CPU]}, 0)]
    cases.append(({"providers": [(CUDA, {"device_id": 3}), CPU]}, 3))
    for kwargs, gpu in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime's own fallback warning
            with pytest.raises(ValueError, match=f"CUDA device_id {gpu} was requested but onnxruntime fell back"):
                SentenceTransformer(tiny_model, **kwargs)


def test_a_cuda_session_that_fails_to_load_names_the_gpu(monkeypatch, tiny_model):
    import lightembed.graphs.onnxruntime as sessions
    from lightembed import SentenceTransformer

    def refuse(*args, **kwargs):
        raise RuntimeError("CUDA failure 101: invalid device ordinal")  # what onnxruntime raises for a bad GPU

    _offer(monkeypatch, [CUDA, CPU])
    monkeypatch.setattr(sessions.ort, "InferenceSession", refuse)
    with pytest.raises(ValueError, match="on CUDA device_id 97: CUDA failure 101"):
        SentenceTransformer(tiny_model, device="cuda:97")


def test_a_session_that_runs_cuda_is_accepted_and_reported(monkeypatch, tiny_model):
    import lightembed.graphs.onnxruntime as sessions
    from lightembed import SentenceTransformer

    real = sessions.ort.InferenceSession

    class CudaSession(real):  # a CPU session that reports CUDA, as one on a GPU machine would
        def __init__(self, path, sess_options=None, providers=None, **kwargs):
            self.requested = providers
            super().__init__(path, sess_options=sess_options, providers=[CPU])

        def get_providers(self):
            return [CUDA, CPU]

        def get_provider_options(self):
            return {CUDA: {"device_id": "0"}, CPU: {}}

    _offer(monkeypatch, [CUDA, CPU])
    monkeypatch.setattr(sessions.ort, "InferenceSession", CudaSession)
    model = SentenceTransformer(tiny_model)  # device=None: CUDA, since onnxruntime offers it
    assert model.device == "cuda" and model.runtime_info.providers[0] == CUDA
    assert model._graph.session.requested[0] == (CUDA, {"device_id": 0, "use_tf32": 0})
    assert model.max_batch_tokens == 32768

"""Provider choice and thread count."""

from __future__ import annotations

import os

import onnxruntime as ort
import pytest

from lightembed.session import CPU, CUDA, resolve_providers, usable_cores


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

"""The CUDA path: the same vectors as on CPU, IO binding, the fused pooling output. Needs a GPU and onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lightembed import CrossEncoder, SentenceTransformer
from lightembed.graphs.providers import CUDA
from tests.tiny import make_model

pytestmark = pytest.mark.skipif(
    CUDA not in ort.get_available_providers(),
    reason="onnxruntime offers no CUDAExecutionProvider here (CPU-only wheel or no GPU); CUDA runs on a GPU machine",
)

TEXTS = ["the cat sat on the mat", "a dog", "hello world red blue green fast slow big small", "query", ""]


def _fused_model(tmp_path: Path, modes: tuple[str, ...] = ("mean",)) -> Path:
    from lightembed_export.pooled import add_pooled_output

    folder = make_model(tmp_path / "m", pooling={"word_embedding_dimension": 8, "pooling_mode": list(modes)})
    assert add_pooled_output(folder / "onnx" / "model.onnx", modes)
    return folder


def test_cuda_session_matches_cpu_with_and_without_io_binding(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m")
    gpu = SentenceTransformer(str(folder), device="cuda")
    cpu = SentenceTransformer(str(folder), device="cpu")
    assert gpu.device == "cuda" and gpu._graph.session.get_providers()[0] == CUDA
    expected = cpu.encode(TEXTS)
    np.testing.assert_allclose(gpu.encode(TEXTS), expected, rtol=1e-5, atol=1e-6)
    gpu._graph.io_binding = True
    np.testing.assert_allclose(gpu.encode(TEXTS), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("modes", [("mean",), ("cls", "max", "mean_sqrt_len_tokens")])
def test_fused_pooling_on_cuda_matches_numpy_pooling_on_cpu(tmp_path: Path, modes: tuple[str, ...]) -> None:
    folder = _fused_model(tmp_path, modes)
    gpu = SentenceTransformer(str(folder), device="cuda")
    assert gpu.use_pooled_output
    cpu = SentenceTransformer(str(folder), device="cpu")
    cpu.use_pooled_output = False
    np.testing.assert_allclose(gpu.encode(TEXTS, batch_size=2), cpu.encode(TEXTS), rtol=1e-5, atol=1e-6)
    tokens = gpu.encode(TEXTS, output_value="token_embeddings")  # the unpooled output still comes back
    assert [t.shape[0] for t in tokens] == [t.shape[0] for t in cpu.encode(TEXTS, output_value="token_embeddings")]


def test_cuda_device_index_out_of_range_is_a_clear_error(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m")
    # whether onnxruntime raises or falls back to CPU, the message names the GPU that was asked for
    with pytest.raises(ValueError, match="CUDA device_id 97"):
        SentenceTransformer(str(folder), device="cuda:97")


def test_cross_encoder_on_cuda_matches_cpu(tmp_path: Path) -> None:
    from tests.test_cross_encoder import make_ce

    folder = make_ce(tmp_path / "r", num_labels=3)
    pairs = [("a dog", "the cat sat"), ("query", "hello world"), ("red", "")]
    gpu = CrossEncoder(str(folder), device="cuda")
    cpu = CrossEncoder(str(folder), device="cpu")
    np.testing.assert_allclose(gpu.predict(pairs), cpu.predict(pairs), rtol=1e-5, atol=1e-6)

"""Decoder embedders (Qwen3-Embedding style): the graph takes position_ids, which the runtime derives from the
attention mask so that left padding gives each text the positions it has alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightembed.graphs.protocol import position_ids
from tests import families


def test_position_ids_count_real_tokens_from_zero():
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    expected = np.array([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(position_ids(mask), expected)
    assert position_ids(mask.astype(np.int32)).dtype == np.int64


@pytest.fixture(scope="module")
def qwen3_export(tmp_path_factory) -> tuple[Path, Path]:
    from lightembed_export import export_model

    root = tmp_path_factory.mktemp("qwen3")
    family = next(f for f in families.FAMILIES if f.build is families.qwen3)
    src = family.make(root / "st")
    export_model(src, root / "onnx", verbose=False)
    return src, root / "onnx"


@pytest.mark.integration
def test_decoder_graph_takes_position_ids_and_pads_left(qwen3_export):
    import onnxruntime

    import lightembed

    _, out = qwen3_export
    session = onnxruntime.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert "position_ids" in [node.name for node in session.get_inputs()]
    model = lightembed.SentenceTransformer(str(out), device="cpu")
    batch = model.pad(model.tokenize_inputs(["a", "hello world"]))
    assert batch.attention_mask.tolist() == [[0, 1, 1], [1, 1, 1]]  # "a" <|endoftext|>, padded on the left


@pytest.mark.integration
def test_decoder_text_alone_equals_text_in_a_left_padded_batch(qwen3_export):
    import lightembed

    _, out = qwen3_export
    model = lightembed.SentenceTransformer(str(out), device="cpu")
    texts = ["hello world", "the quick brown fox jumps over the lazy dog " * 3, "a"]
    batched = model.encode(texts, batch_size=3, prompt_name="query")
    for i, text in enumerate(texts):
        alone = model.encode([text], prompt_name="query")[0]
        assert float(alone @ batched[i]) > 1 - 1e-6, text


@pytest.mark.integration
def test_decoder_matches_sentence_transformers_with_prompts(qwen3_export):
    import sentence_transformers

    import lightembed

    src, out = qwen3_export
    texts = families.TEXTS
    ref = sentence_transformers.SentenceTransformer(str(src), device="cpu").encode(
        texts, batch_size=4, prompt_name="query", show_progress_bar=False
    )
    got = lightembed.SentenceTransformer(str(out), device="cpu").encode(texts, batch_size=4, prompt_name="query")
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 1 - 1e-6

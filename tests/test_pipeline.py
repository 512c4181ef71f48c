"""The host pipeline (lightembed/pipeline.py): the next batches are tokenized on a thread while one runs, with the
same vectors in the same order and no batch lost. Forced on on CPU with `model.host_pipeline = True`; a slow graph
wrapper that waits until the thread has started tokenizing the next chunk proves the two overlap (no timing is
asserted: the wait is an event, which the serial path can never set)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lightembed import SentenceTransformer, pipeline
from tests.tiny import WORDS

TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + (i * 5) % 11)) for i in range(150)]


class _Overlap:
    """Wraps the graph: its first call waits (up to 10 s) until the tokenizing thread starts a later chunk."""

    def __init__(self, graph, later_chunk: threading.Event) -> None:
        self._graph, self.later_chunk = graph, later_chunk
        self.overlapped: bool | None = None
        self.rows = 0

    def __getattr__(self, name):
        return getattr(self._graph, name)

    def __call__(self, arrays, output=None):
        if self.overlapped is None:
            self.overlapped = self.later_chunk.wait(10)
        self.rows += len(arrays["input_ids"])
        return self._graph(arrays, output)


def _instrument(model, monkeypatch) -> tuple[_Overlap, list[str]]:
    later_chunk, threads = threading.Event(), []
    real = model.tokenize_inputs

    def tokenize_inputs(items):
        threads.append(threading.current_thread().name)
        if len(threads) > 1:
            later_chunk.set()
        return real(items)

    monkeypatch.setattr(model, "tokenize_inputs", tokenize_inputs)
    wrapper = _Overlap(model._graph, later_chunk)
    model._graph = wrapper
    return wrapper, threads


def test_pipeline_overlaps_and_gives_the_serial_vectors_in_order(tiny_model, monkeypatch):
    model = SentenceTransformer(str(tiny_model))
    serial = model.encode(TEXTS, batch_size=8)
    alone = np.stack([model.encode(t) for t in TEXTS[:20]])

    model.host_pipeline = True
    wrapper, threads = _instrument(model, monkeypatch)
    piped = model.encode(TEXTS, batch_size=8)

    assert wrapper.overlapped is True  # batch 1 ran while a later chunk was being tokenized
    assert threads and set(threads) == {"lightembed-tokenize"}
    assert len(threads) == -(-len(TEXTS) // (8 * pipeline.CHUNK_BATCHES))  # each chunk tokenized once
    assert wrapper.rows == len(TEXTS)  # no batch lost, none run twice
    np.testing.assert_allclose(piped, serial, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(piped[:20], alone, rtol=1e-6, atol=1e-6)


def test_pipeline_keeps_the_other_outputs_and_pairs(tiny_model):
    model = SentenceTransformer(str(tiny_model))
    serial = model.encode(TEXTS[:40], output_value="token_embeddings", batch_size=4)
    model.host_pipeline = True
    piped = model.encode(TEXTS[:40], output_value="token_embeddings", batch_size=4)
    assert len(piped) == 40
    for a, b in zip(piped, serial):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    pairs = [(a, b) for a, b in zip(TEXTS[:30], TEXTS[30:60])]
    ids = [b.input_ids.tolist() for _, b in pipeline.batches(model, pairs, 4)]
    assert sum(len(x) for x in ids) == 30


def test_a_bad_text_in_a_late_chunk_is_raised_and_the_thread_stops(tiny_model):
    model = SentenceTransformer(str(tiny_model))
    texts = TEXTS + ["\ud800"]  # shortest, so tokenized in the last chunk, after the first batches were handed out
    stream = pipeline.batches(model, texts, 4)
    first = next(stream)
    assert len(first[0]) == 4
    with pytest.raises(ValueError, match="surrogate"):
        list(stream)
    assert not any(t.name == "lightembed-tokenize" for t in threading.enumerate())


def test_closing_early_stops_the_thread(tiny_model):
    model = SentenceTransformer(str(tiny_model))
    stream = pipeline.batches(model, TEXTS * 4, 2)
    next(stream)
    stream.close()
    assert not any(t.name == "lightembed-tokenize" for t in threading.enumerate())


def test_on_by_default_on_cuda_only():
    assert pipeline.wanted("cuda", None) and not pipeline.wanted("cpu", None)
    assert pipeline.wanted("cpu", True) and not pipeline.wanted("cuda", False)

"""The batcher alone (no HTTP): merging across requests, splitting, order, failures, cancellation, the queue bound."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from lightembed.server.batcher import Batcher
from lightembed.server.protocol import Overloaded


class FakeModel:
    """forward() returns each row's token ids summed (so results show which input they came from), records
    every batch and the thread it ran in, and fails on a batch holding the id 666."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def pad(self, encodings):
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        for r, e in enumerate(encodings):
            ids[r, : len(e.ids)] = e.ids
        return SimpleNamespace(input_ids=ids)

    def forward(self, batch, scale=1):
        self.threads.add(threading.current_thread().name)
        self.batches.append([int(r.sum()) for r in batch.input_ids])
        if (batch.input_ids == 666).any():
            raise ValueError("bad input 666")
        return batch.input_ids.sum(axis=1, keepdims=True) * scale


def enc(*ids: int):
    return SimpleNamespace(ids=list(ids))


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_rows_in_order():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.05)
        b.start()
        jobs = [b.submit([enc(i, 1), enc(i, 2, 3)]) for i in range(1, 5)]
        out = await asyncio.gather(*jobs)
        await b.close()
        return out

    out = run(main())
    for i, rows in enumerate(out, start=1):
        assert [int(r[0]) for r in rows] == [i + 1, i + 5]
    assert len(model.batches) == 1 and len(model.batches[0]) == 8  # 4 requests, one graph run
    assert all(name.startswith("lightembed-") for name in model.threads)  # the worker thread, not the loop


def test_big_request_is_split_under_items_and_tokens_and_reassembled():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=3, max_tokens=8, wait_s=0)
        b.start()
        rows = await b.submit([enc(*([1] * n)) for n in (1, 5, 2, 4, 3, 1, 2)])
        await b.close()
        return rows

    rows = run(main())
    assert [int(r[0]) for r in rows] == [1, 5, 2, 4, 3, 1, 2]
    assert all(len(batch) <= 3 for batch in model.batches)
    assert all(len(batch) * max(batch) <= 8 or len(batch) == 1 for batch in model.batches)  # padded-token cap


def test_no_merge_runs_each_request_alone():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.05, merge=False)
        b.start()
        await asyncio.gather(*[b.submit([enc(i)]) for i in range(1, 5)])
        await b.close()

    run(main())
    assert sorted(model.batches) == [[1], [2], [3], [4]]


def test_different_keys_never_share_a_batch():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.05)
        b.start()
        a, c = await asyncio.gather(b.submit([enc(1)], key="x", scale=1), b.submit([enc(1)], key="y", scale=10))
        await b.close()
        return a, c

    a, c = run(main())
    assert int(a[0][0]) == 1 and int(c[0][0]) == 10
    assert len(model.batches) == 2


def test_one_bad_input_fails_only_its_own_request():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.05)
        b.start()
        out = await asyncio.gather(b.submit([enc(1)]), b.submit([enc(666)]), b.submit([enc(2)]), return_exceptions=True)
        await b.close()
        return out

    good1, bad, good2 = run(main())
    assert int(good1[0][0]) == 1 and int(good2[0][0]) == 2
    assert isinstance(bad, ValueError) and "666" in str(bad)


def test_cancelled_request_costs_no_inference_and_frees_its_queue_room():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.3, max_queue=3)
        b.start()
        gone = asyncio.ensure_future(b.submit([enc(7), enc(8)]))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as info:
            await b.submit([enc(1), enc(2)])  # 2 + 2 > 3
        assert info.value.status == 429 and info.value.headers()["Retry-After"].isdigit()
        gone.cancel()
        await asyncio.sleep(0)
        rows = await b.submit([enc(1), enc(2)])  # room again
        await b.close()
        return rows

    rows = run(main())
    assert [int(r[0]) for r in rows] == [1, 2]
    assert model.batches == [[1, 2]]  # the cancelled inputs 7 and 8 never ran


def test_short_inputs_are_not_padded_to_a_long_one_gathered_with_them():
    model = FakeModel()

    async def main():
        b = Batcher(model, max_items=8, max_tokens=None, wait_s=0.05)
        b.start()
        await asyncio.gather(b.submit([enc(*[1] * 40)]), *[b.submit([enc(1, 1, 1)]) for _ in range(3)], b.submit([enc(*[1] * 15)]))
        await b.close()

    run(main())
    assert model.batches == [[40], [15], [3, 3, 3]]  # one gather, cut where an input is under half the longest

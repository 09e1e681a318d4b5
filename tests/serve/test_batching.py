"""DynamicBatcher: grouping, the delay bound, admission (backpressure), isolation, withdrawal."""

import asyncio
import time

import numpy as np
import pytest

from res2net.serve.batching import DynamicBatcher
from res2net.serve.errors import QueueFull


class Recorder:
    """infer_fn that records batch sizes, sleeps like a model, and fails on NaN rows."""

    def __init__(self, seconds: float = 0.0):
        self.sizes: list[int] = []
        self.seconds = seconds

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        time.sleep(self.seconds)
        if np.isnan(batch).any():
            raise ValueError("NaN input")
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True) * 2


def run(coro):
    return asyncio.run(coro)


def rows(n: int, start: int = 0) -> list[np.ndarray]:
    return [np.full((2,), float(i), np.float32) for i in range(start, start + n)]


def test_concurrent_requests_share_a_forward_and_get_their_own_rows():
    rec = Recorder(seconds=0.05)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4, max_delay_s=0.05, max_queue=64)
        b.start()

        async def one(i):
            with b.admit(1):
                (out,) = await b.submit(rows(1, i))
                return out

        outs = await asyncio.gather(*(one(i) for i in range(10)))
        await b.stop()
        return outs

    outs = run(main())
    assert [float(o[0]) for o in outs] == [4.0 * i for i in range(10)]  # each gets its own row back
    assert sum(rec.sizes) == 10
    assert max(rec.sizes) == 4 and len(rec.sizes) <= 4, rec.sizes  # grouped, never above max_batch_size


def test_a_lone_request_waits_only_max_delay():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=8, max_delay_s=0.05, max_queue=8)
        b.start()
        t = time.perf_counter()
        with b.admit(1):
            await b.submit(rows(1))
        elapsed = time.perf_counter() - t
        await b.stop()
        return elapsed

    elapsed = run(main())
    assert 0.04 <= elapsed < 1.0, elapsed
    assert rec.sizes == [1]


def test_zero_delay_runs_immediately():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=8, max_delay_s=0.0, max_queue=8)
        b.start()
        t = time.perf_counter()
        with b.admit(1):
            await b.submit(rows(1))
        await b.stop()
        return time.perf_counter() - t

    assert run(main()) < 0.5


def test_admission_is_bounded_and_released():
    b = DynamicBatcher(Recorder(), max_batch_size=2, max_delay_s=0.0, max_queue=3)
    with b.admit(2):
        assert b.admitted == 2
        with pytest.raises(QueueFull, match="capacity"), b.admit(2):
            pass
        with b.admit(1):
            assert not b.has_room(1)
    assert b.admitted == 0
    with pytest.raises(QueueFull, match="more than the queue"), b.admit(4):
        pass


def test_a_failing_input_fails_alone():
    rec = Recorder(seconds=0.02)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=8, max_delay_s=0.1, max_queue=64)
        b.start()

        async def one(x):
            with b.admit(1):
                return (await b.submit([x]))[0]

        good = rows(3)
        bad = np.full((2,), np.nan, np.float32)
        results = await asyncio.gather(*(one(x) for x in [good[0], bad, good[1], good[2]]), return_exceptions=True)
        await b.stop()
        return results

    results = run(main())
    assert isinstance(results[1], ValueError)
    assert [float(r[0]) for i, r in enumerate(results) if i != 1] == [0.0, 4.0, 8.0]
    assert rec.sizes[0] == 4 and sorted(rec.sizes[1:]) == [1, 1, 1, 1]  # batch failed, then one by one


def test_timed_out_requests_leave_the_queue_uncomputed():
    rec = Recorder(seconds=0.3)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=1, max_delay_s=0.0, max_queue=8)
        b.start()

        async def one(i, timeout):
            with b.admit(1):
                return await asyncio.wait_for(b.submit(rows(1, i)), timeout)

        first = asyncio.ensure_future(one(0, 5.0))
        await asyncio.sleep(0.05)  # the first is now computing; the next two wait behind it
        late = await asyncio.gather(one(1, 0.1), one(2, 0.1), return_exceptions=True)
        await first
        await asyncio.sleep(0.4)
        admitted = b.admitted
        await b.stop()
        return late, admitted

    late, admitted = run(main())
    assert all(isinstance(e, asyncio.TimeoutError) for e in late)
    assert rec.sizes == [1]  # the two withdrawn images were never run
    assert admitted == 0


def test_allowed_batch_sizes():
    from res2net.serve.batching import allowed_batch_sizes

    assert allowed_batch_sizes(1) == (1,)
    assert allowed_batch_sizes(8) == (1, 2, 4, 8)
    assert allowed_batch_sizes(12) == (1, 2, 4, 8, 12)


def test_only_allowed_batch_sizes_reach_the_engine():
    """7 waiting images run as 4 + 2 + 1: static-shape engines never see an uncompiled shape."""
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=8, max_delay_s=0.05, max_queue=64)
        b.start()

        async def one(i):
            with b.admit(1):
                return (await b.submit(rows(1, i)))[0]

        outs = await asyncio.gather(*(one(i) for i in range(7)))
        await b.stop()
        return outs

    outs = run(main())
    assert [float(o[0]) for o in outs] == [4.0 * i for i in range(7)]
    assert rec.sizes == [4, 2, 1]


def test_withdrawn_items_do_not_spin_the_loop():
    rec = Recorder(seconds=0.2)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4, max_delay_s=0.0, max_queue=8)
        b.start()

        async def one(i, timeout):
            with b.admit(1):
                return await asyncio.wait_for(b.submit(rows(1, i)), timeout)

        first = asyncio.ensure_future(one(0, 5.0))
        await asyncio.sleep(0.05)
        await asyncio.gather(one(1, 0.01), return_exceptions=True)  # withdrawn while the first computes
        await first
        t = time.process_time()
        await asyncio.sleep(0.3)  # idle: the loop must sleep, not busy-wait on the withdrawn item
        cpu = time.process_time() - t
        last = await one(2, 5.0)
        await b.stop()
        return cpu, last

    cpu, last = run(main())
    assert cpu < 0.15, f"batcher used {cpu:.2f} s of CPU while idle"
    assert float(last[0][0]) == 8.0 and rec.sizes == [1, 1]

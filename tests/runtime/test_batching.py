"""DynamicBatcher on its own: batch sizes, ordering, and errors reaching every caller."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from slm_agents.runtime.batching import DynamicBatcher


def run(coro):
    return asyncio.run(coro)


def test_concurrent_calls_form_batches_up_to_the_maximum():
    sizes: list[int] = []

    async def double(items):
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [i * 2 for i in items]

    async def main():
        batcher = DynamicBatcher(double, max_batch_size=4, max_wait_s=0.05)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert run(main()) == [i * 2 for i in range(10)]
    assert sizes == [4, 4, 2]


def test_a_lone_call_waits_at_most_max_wait():
    async def main():
        batcher = DynamicBatcher(lambda items: asyncio.sleep(0, [len(items)]), 8, max_wait_s=0.01)
        return await asyncio.wait_for(batcher.submit("x"), timeout=5)

    assert run(main()) == 1


def test_a_lone_caller_does_not_wait_for_calls_nobody_is_making():
    """With nobody else in flight, the batch runs at once, however long max_wait_s is."""

    async def main():
        batcher = DynamicBatcher(lambda items: asyncio.sleep(0, items), 8, max_wait_s=30.0)
        return await asyncio.wait_for(batcher.submit("x"), timeout=5)

    assert run(main()) == "x"


def test_closed_loop_clients_merge_into_one_batch_without_waiting_out_the_timeout():
    """Eight clients that each send again 30 ms after their answer: once the batcher has seen
    them all in flight, each batch waits for the ones on their way back and holds all eight,
    and none waits out its long max_wait_s (the next batch starts as soon as they are back).
    Only a client that stops makes a batch wait for it, once: the last one here."""
    sizes: list[int] = []
    starts: list[float] = []

    async def model(items):
        sizes.append(len(items))
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)
        return items

    async def client(batcher, i):
        await asyncio.sleep(0.005 * i)  # staggered: the first batch catches only some
        for _ in range(5):
            await batcher.submit(i)
            await asyncio.sleep(0.03)  # the round trip back to the server

    async def main():
        batcher = DynamicBatcher(model, max_batch_size=16, max_wait_s=2.0)
        await asyncio.wait_for(asyncio.gather(*(client(batcher, i) for i in range(8))), 30)

    run(main())
    assert sum(sizes) == 40
    assert sizes[1:-1] == [8] * (len(sizes) - 2), sizes  # one cohort after the first batch
    # the last batch may wait for a client that left
    gaps = [b - a for a, b in itertools.pairwise(starts[:-1])]
    assert max(gaps) < 0.05 + 0.03 + 0.5, (gaps, sizes)  # far below the 2 s max_wait_s


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs():
    calls = 0

    async def flaky(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model crashed")
        return items

    async def main():
        batcher = DynamicBatcher(flaky, max_batch_size=2, max_wait_s=0.05)
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        second = await batcher.submit(3)
        return first, second

    first, second = run(main())
    assert all(isinstance(e, RuntimeError) and "model crashed" in str(e) for e in first)
    assert second == 3


def test_a_handler_returning_the_wrong_count_is_an_error():
    async def main():
        batcher = DynamicBatcher(lambda items: asyncio.sleep(0, []), 2, 0.0)
        return await batcher.submit(1)

    with pytest.raises(RuntimeError, match="batch of 1 returned 0 results"):
        run(main())


@pytest.mark.parametrize("bad", [dict(max_batch_size=0), dict(max_wait_s=-1)])
def test_invalid_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DynamicBatcher(lambda items: items, **bad)

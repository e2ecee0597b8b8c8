"""Dynamic batching: single calls that arrive close together go to the model as one batch.

Why not Ray Serve's ``serve.batch``: in Ray 2.60 it only runs inside a Serve deployment (its
queue asks for the replica context), and agents here are plain actors; inside Serve too (the
model servers of ``slm_agents.serve``) it forms the next batch while the current one runs,
which splits closed-loop clients into cohorts. This is the same idea in one small class: once
the last batch is done, take the waiting calls and run them together (up to
``max_batch_size``), handing each caller its own result. While a batch runs, new calls queue up
and form the next one; a caller that went away meanwhile is skipped.

How long a batch waits for more: only for calls it expects. The batcher counts the calls in
flight; when fewer are waiting than were in flight during the last batches, the callers just
answered are on their way back, and the batch waits up to ``max_wait_s`` for them. Without
that, closed-loop clients split into cohorts for good (16 clients: a batch of 12 runs while 4
queue, those 4 go next while the 12 come back, and so on), and every cohort pays a whole batch's
time. A lone caller (nobody else in flight lately) runs at once, without waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

MEMORY = 2  # batches whose peak of calls in flight sets how many the next batch expects


class DynamicBatcher:
    def __init__(
        self,
        handle_batch: Callable[[list[Any]], Awaitable[list[Any]]],
        max_batch_size: int = 16,
        max_wait_s: float = 0.005,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
        self.handle_batch = handle_batch
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_s
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight = 0  # calls submitted and not answered yet
        self._peak = 0  # the most calls in flight since the current batch started
        self._peaks: deque[int] = deque(maxlen=MEMORY)

    async def submit(self, item: Any) -> Any:
        """Queue one item; returns its result once its batch has run (or raises its error)."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run_forever())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            await self._queue.put((item, future))  # type: ignore[union-attr]
            return await future
        finally:
            self._in_flight -= 1

    def _expected(self) -> int:
        """How many calls the batch starting now should hold: the recent peak in flight."""
        self._peaks.append(self._peak)
        self._peak = self._in_flight
        return min(max(self._peaks), self.max_batch_size)

    async def _run_forever(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            expected = self._expected()
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if len(batch) >= expected or remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            batch = [(item, future) for item, future in batch if not future.done()]
            if not batch:  # every caller went away (cancelled) while it waited
                continue
            items = [item for item, _ in batch]
            try:
                results = await self.handle_batch(items)
                if len(results) != len(items):
                    raise RuntimeError(f"batch of {len(items)} returned {len(results)} results")
            except Exception as exc:  # the whole batch failed: each caller gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

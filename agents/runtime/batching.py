"""Dynamic batching: single calls that arrive close together go to the model as one batch.

Why not Ray Serve's ``serve.batch``: in Ray 2.60 it only runs inside a Serve deployment (its
queue asks for the replica context), and agents here are plain actors; inside Serve too (the
model servers of ``slm_agents.serve``) it forms the next batch while the current one runs,
which splits closed-loop clients into cohorts. This is the same idea in one small class: once
the last batch is done, take the first waiting call, wait up to ``max_wait_s`` for more (up to
``max_batch_size``), run them together, hand each caller its own result. While a batch runs,
new calls queue up and form the next one; a caller that went away meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


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

    async def submit(self, item: Any) -> Any:
        """Queue one item; returns its result once its batch has run (or raises its error)."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run_forever())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))  # type: ignore[union-attr]
        return await future

    async def _run_forever(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(remaining, 0)))
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

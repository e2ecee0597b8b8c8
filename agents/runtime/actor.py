"""The Ray actor that hosts one agent, with dynamic batching (``DynamicBatcher``).

Callers send single tasks; tasks that arrive within ``max_wait_ms`` of each other go to the
model as one batch of up to ``max_batch_size``. The model runs in a worker thread so the
actor's event loop keeps accepting requests while a batch computes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agents.result import Result, Task
from agents.runtime.batching import DynamicBatcher
from agents.runtime.spec import AgentSpec


class AgentActor:
    def __init__(self, spec: AgentSpec, max_batch_size: int, max_wait_ms: float, threads: int):
        import torch

        # One actor per core budget: torch must not spawn more threads than it was given,
        # or actors on one machine stall each other (measured: 12x slower fp32 decode).
        torch.set_num_threads(max(1, threads))
        self.spec = spec
        self.agent = spec.build()
        self.batcher = DynamicBatcher(self._run_batch, max_batch_size, max_wait_ms / 1000)
        self.batches: list[int] = []  # sizes of the batches run, for tests and benchmarks
        self._model_lock = asyncio.Lock()  # one model call at a time (adapters switch per call)

    async def _run_batch(self, tasks: list[Task]) -> list[Result]:
        async with self._model_lock:
            self.batches.append(len(tasks))
            return await asyncio.to_thread(self.agent.run_batch, tasks)

    async def run(self, task: Task) -> Result:
        """One task; it joins whatever batch is forming."""
        return await self.batcher.submit(task)

    async def run_batch(self, tasks: list[Task]) -> list[Result]:
        """A batch the caller already formed: straight to the model."""
        return await self._run_batch(tasks)

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "agent": self.spec.name, "batches": list(self.batches)}

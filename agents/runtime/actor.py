"""The Ray actors that host one agent, or several that share a model, with dynamic batching.

Callers send single tasks; tasks for the same agent that arrive within ``max_wait_ms`` of each
other go to the model as one batch of up to ``max_batch_size``. The model runs in a worker
thread so the actor's event loop keeps accepting requests while a batch computes: always the
same one thread, because each new thread that calls torch gets its own OpenMP thread team, and
idle teams spin-wait on the cores the next call needs.

Several specs in one actor (``RayAgent.share``) build their models through the per-process
cache in ``AgentSpec``, so agents on one base model with different LoRA adapters hold one copy
of the weights; one lock serialises their model calls (adapters switch per call).

With ``max_batch_size=1`` there is nothing to batch, and :class:`DirectAgentActor`, a plain
synchronous actor, serves the calls instead.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slm_agents.result import Result, Task
from slm_agents.runtime.batching import DynamicBatcher
from slm_agents.runtime.spec import AgentSpec
from slm_agents.runtime.worker import prepare_worker


class _Hosting:
    """What both actor kinds share: the agents built once, torch's threads, bookkeeping."""

    def __init__(self, specs: AgentSpec | list[AgentSpec], threads: int):
        prepare_worker(threads)
        self.specs = [specs] if isinstance(specs, AgentSpec) else list(specs)
        self.agents = {spec.name: spec.build() for spec in self.specs}
        self.default = self.specs[0].name
        self.batches: list[int] = []  # sizes of the batches run, for tests and benchmarks
        self.batches_by_agent: dict[str, list[int]] = {name: [] for name in self.agents}

    def _record(self, name: str, size: int) -> None:
        self.batches.append(size)
        self.batches_by_agent[name].append(size)

    def _check(self, agent: str | None) -> None:
        if agent is not None and agent not in self.agents:
            raise KeyError(f"no agent {agent!r} in this actor; it hosts {sorted(self.agents)}")

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
            "kind": type(self).__name__,
            "agent": self.default,
            "agents": list(self.agents),
            "batches": list(self.batches),
            "batches_by_agent": {k: list(v) for k, v in self.batches_by_agent.items()},
            "models": len({id(getattr(a, "model", a)) for a in self.agents.values()}),
        }


class DirectAgentActor(_Hosting):
    """No batching (``max_batch_size=1``): a plain synchronous actor that calls the model itself.

    Ray runs a synchronous actor with ``max_concurrency=1`` one call at a time on one thread,
    which is all an unbatched agent needs; it skips the event loop, the batcher and the hop to
    the model thread, which cost a few milliseconds a request on a 2-core machine (see
    ``benchmarks/runtime.py``, classification overhead).
    """

    def run(self, task: Task, agent: str | None = None) -> Result:
        return self.run_batch([task], agent)[0]

    def run_batch(self, tasks: list[Task], agent: str | None = None) -> list[Result]:
        self._check(agent)
        name = agent or self.default
        self._record(name, len(tasks))
        return self.agents[name].run_batch(tasks)


class AgentActor(_Hosting):
    def __init__(
        self,
        specs: AgentSpec | list[AgentSpec],
        max_batch_size: int,
        max_wait_ms: float,
        threads: int,
    ):
        super().__init__(specs, threads)
        self.batchers = {
            name: DynamicBatcher(
                functools.partial(self._run_batch, agent=name), max_batch_size, max_wait_ms / 1000
            )
            for name in self.agents
        }
        self._model_lock = asyncio.Lock()  # one model call at a time (adapters switch per call)
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def _run_batch(self, tasks: list[Task], agent: str | None = None) -> list[Result]:
        name = agent or self.default
        async with self._model_lock:
            self._record(name, len(tasks))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._model_thread, self.agents[name].run_batch, tasks
            )

    async def run(self, task: Task, agent: str | None = None) -> Result:
        """One task; it joins whatever batch is forming for that agent."""
        self._check(agent)
        return await self.batchers[agent or self.default].submit(task)

    async def run_batch(self, tasks: list[Task], agent: str | None = None) -> list[Result]:
        """A batch the caller already formed: straight to the model."""
        self._check(agent)
        return await self._run_batch(tasks, agent)

"""RayAgent: an agent hosted by Ray actors, behind the same API as a local Agent.

How it is hosted is one :class:`~slm_agents.runtime.config.HostingConfig` (``hosting=``):

* Replicas: ``replicas`` actors, each with ``num_cpus`` / ``num_gpus`` (fractions allowed) and
  ``max_concurrency``; tasks go round-robin, each actor batches what reaches it
  (``max_batch_size``, ``max_wait_ms``).
* Fault tolerance: Ray restarts a dead actor and re-runs its in-flight calls, each up to
  ``max_retries`` times. Each task is one call with one Result, matched by task id, so a retry
  never duplicates a Result; when retries run out the task comes back as an error Result.
* Backpressure: at most ``max_pending`` tasks in flight per RayAgent. When full, ``when_full=
  "wait"`` blocks until one finishes; ``"error"`` returns a busy error Result at once. Memory
  stays bounded either way.
* ``local()`` builds the same agent in this process without Ray, for debugging.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from typing import Any

from slm_agents.agent import Agent, failed, merge, split_valid
from slm_agents.result import Result, Task
from slm_agents.runtime.config import HostingConfig
from slm_agents.runtime.spec import AgentSpec

DEFAULT_HOSTING = HostingConfig()


def ensure_ray(address: str | None = None) -> None:
    """Start a local Ray on demand, or connect to ``address`` / ``RAY_ADDRESS``.

    With neither, a new local cluster starts (``address="local"``): plain ``ray.init()`` would
    silently join whatever Ray cluster another process last started on this machine.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    options: dict[str, Any] = {}
    if address == "local":
        # Ray runs workers at nice 15 so they yield to the driver; here the workers *are* the
        # model servers, and niced actors measured ~50% slower next to any busy neighbour.
        options["_system_config"] = {"worker_niceness": 0}
    ray.init(
        address=address,
        ignore_reinit_error=True,
        include_dashboard=False,
        log_to_driver=False,  # no runtime_env: see slm_agents.runtime.worker
        **options,
    )


class RayAgent(Agent):
    """An agent in Ray actors; ``hosting`` says how many, their resources, batching, retries."""

    def __init__(self, spec: AgentSpec, hosting: HostingConfig = DEFAULT_HOSTING):
        actors = _start_actors([spec], hosting)
        self._attach(spec, actors, None, hosting)

    @classmethod
    def share(
        cls, specs: Sequence[AgentSpec], hosting: HostingConfig = DEFAULT_HOSTING
    ) -> dict[str, RayAgent]:
        """Host several agents in the same actors, one RayAgent per spec, keyed by name.

        Specs on one base model (e.g. different LoRA ``adapter``s of one ``CausalLM``) then hold
        one copy of the weights per replica instead of one per agent. Each agent keeps its own
        batches; their model calls take turns. ``shutdown()`` on any of them stops the shared
        actors for all. ``max_pending`` bounds each agent's tasks in flight.
        """
        names = [spec.name for spec in specs]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"share needs specs with distinct names, got {names}")
        actors = _start_actors(list(specs), hosting)
        agents = {}
        for spec in specs:
            agent = cls.__new__(cls)
            agent._attach(spec, actors, spec.name, hosting)
            agents[spec.name] = agent
        return agents

    def _attach(
        self, spec: AgentSpec, actors: list[Any], agent: str | None, hosting: HostingConfig
    ) -> None:
        self.spec, self.name, self.actors, self._agent = spec, spec.name, actors, agent
        self.hosting = hosting
        self._slots = threading.BoundedSemaphore(hosting.max_pending)
        self._next = itertools.cycle(range(len(actors)))

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        pending: dict[Any, Task] = {}  # ObjectRef -> task, at most max_pending in flight
        results: dict[str, Result] = {}
        for task in valid:
            if not self._acquire(pending, results):
                message = f"busy: {self.hosting.max_pending} tasks already in flight (max_pending)"
                results[task.id] = failed(task, self.name, message)
                continue
            pending[self.actors[next(self._next)].run.remote(task, self._agent)] = task
        while pending:
            self._collect(next(iter(pending)), pending, results)
        return merge(len(tasks), errors, [results[t.id] for t in valid])

    def _acquire(self, pending: dict[Any, Task], results: dict[str, Result]) -> bool:
        """Take an in-flight slot; when full, wait (finishing our own oldest calls) or refuse."""
        import ray

        while not self._slots.acquire(blocking=False):
            if self.hosting.when_full == "error":
                return False
            if pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                self._collect(done, pending, results)
            elif self._slots.acquire(timeout=0.1):  # slots held by other callers' threads
                return True
        return True

    def _collect(self, ref: Any, pending: dict[Any, Task], results: dict[str, Result]) -> None:
        import ray

        task = pending.pop(ref)
        try:
            results[task.id] = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps the real error
            reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else repr(cause)
            message = f"agent {self.name!r} failed after retries: {type(exc).__name__}: {reason}"
            results[task.id] = failed(task, self.name, message)
        finally:
            self._slots.release()

    def info(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.info.remote() for a in self.actors])

    def local(self) -> Agent:
        """The same agent, built in this process without Ray (for debugging)."""
        return self.spec.build()

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


def _start_actors(specs: list[AgentSpec], hosting: HostingConfig) -> list[Any]:
    """Start ``hosting.replicas`` actors hosting ``specs``; wait until each has its models."""
    if not isinstance(hosting, HostingConfig):
        raise TypeError(f"hosting must be a HostingConfig, got {type(hosting).__name__}")
    import ray

    from slm_agents.runtime.actor import AgentActor, DirectAgentActor

    h = hosting
    ensure_ray(h.address)
    threads = max(1, int(h.num_cpus))
    hosted = specs[0] if len(specs) == 1 else specs
    direct = h.max_batch_size == 1  # nothing to batch: a synchronous actor, one call at a time
    remote = ray.remote(DirectAgentActor if direct else AgentActor).options(
        num_cpus=h.num_cpus,
        num_gpus=h.num_gpus,
        max_concurrency=1 if direct else h.max_concurrency,
        max_restarts=h.max_retries,
        max_task_retries=h.max_retries,
    )
    args = (hosted, threads) if direct else (hosted, h.max_batch_size, h.max_wait_ms, threads)
    actors = [remote.remote(*args) for _ in range(h.replicas)]
    try:  # wait until every replica has loaded its model
        ray.get([a.info.remote() for a in actors], timeout=h.startup_timeout_s)
    except ray.exceptions.GetTimeoutError as exc:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        names = [spec.name for spec in specs]
        raise RuntimeError(
            f"agent(s) {names}: {h.replicas} replica(s) with num_cpus={h.num_cpus}, "
            f"num_gpus={h.num_gpus} not ready after {h.startup_timeout_s} s; free resources "
            f"now: {ray.available_resources()} (shut down other agents or ask for less)"
        ) from exc
    return actors

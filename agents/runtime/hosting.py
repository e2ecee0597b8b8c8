"""RayAgent: an agent hosted by Ray actors, behind the same API as a local Agent.

* Replicas: ``replicas`` actors, each with ``num_cpus`` / ``num_gpus`` (fractions allowed) and
  ``max_concurrency``; tasks go round-robin, each actor batches what reaches it.
* Fault tolerance: Ray restarts a dead actor (``max_restarts``) and re-runs its in-flight calls
  (``max_task_retries``). Each task is one call with one Result, matched by task id, so a retry
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

from agents.agent import Agent, failed, merge, split_valid
from agents.result import Result, Task
from agents.runtime.spec import AgentSpec


def ensure_ray(address: str | None = None) -> None:
    """Start a local Ray on demand, or connect to ``address`` / ``RAY_ADDRESS``.

    With neither, a new local cluster starts (``address="local"``): plain ``ray.init()`` would
    silently join whatever Ray cluster another process last started on this machine.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    ray.init(
        address=address,
        ignore_reinit_error=True,
        include_dashboard=False,
        log_to_driver=False,
        # Fork-safety: tokenizers' thread pool must not be shared into Ray's worker processes.
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )


class RayAgent(Agent):
    def __init__(
        self,
        spec: AgentSpec,
        *,
        replicas: int = 1,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_concurrency: int = 64,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_retries: int = 2,
        max_pending: int = 256,
        when_full: str = "wait",
        address: str | None = None,
        startup_timeout_s: float = 300,
    ):
        import ray

        from agents.runtime.actor import AgentActor

        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas!r}")
        if when_full not in ("wait", "error"):
            raise ValueError(f"when_full must be 'wait' or 'error', got {when_full!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        ensure_ray(address)
        self.spec, self.name = spec, spec.name
        self.max_pending, self.when_full = max_pending, when_full
        self._slots = threading.BoundedSemaphore(max_pending)
        remote = ray.remote(AgentActor).options(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_concurrency=max_concurrency,
            max_restarts=max_retries,
            max_task_retries=max_retries,
        )
        threads = max(1, int(num_cpus))
        self.actors = [
            remote.remote(spec, max_batch_size, max_wait_ms, threads) for _ in range(replicas)
        ]
        self._next = itertools.cycle(range(replicas))
        try:  # wait until every replica has loaded its model
            ray.get([a.info.remote() for a in self.actors], timeout=startup_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise RuntimeError(
                f"agent {self.name!r}: {replicas} replica(s) with num_cpus={num_cpus}, "
                f"num_gpus={num_gpus} not ready after {startup_timeout_s} s; free resources "
                f"now: {ray.available_resources()} (shut down other agents or ask for less)"
            ) from None

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        pending: dict[Any, Task] = {}  # ObjectRef -> task, at most max_pending in flight
        results: dict[str, Result] = {}
        for task in valid:
            if not self._acquire(pending, results):
                message = f"busy: {self.max_pending} tasks already in flight (max_pending)"
                results[task.id] = failed(task, self.name, message)
                continue
            pending[self.actors[next(self._next)].run.remote(task)] = task
        while pending:
            self._collect(next(iter(pending)), pending, results)
        return merge(len(tasks), errors, [results[t.id] for t in valid])

    def _acquire(self, pending: dict[Any, Task], results: dict[str, Result]) -> bool:
        """Take an in-flight slot; when full, wait (finishing our own oldest calls) or refuse."""
        import ray

        while not self._slots.acquire(blocking=False):
            if self.when_full == "error":
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

"""HostingConfig: how Ray hosts an agent, one validated value instead of a dozen keywords.

``RayAgent(spec, hosting=HostingConfig(num_cpus=2, max_batch_size=8))`` and
``RayAgent.share(specs, hosting=...)`` take it; a team spec's ``hosting:`` block is the same
fields plus ``ray``. Frozen, so one config can serve many agents; vary it with
``dataclasses.replace(config, replicas=2)``. A bad value fails here, before Ray starts, with
the parameter's name and the value in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WHEN_FULL = ("wait", "error")


@dataclass(frozen=True)
class HostingConfig:
    replicas: int = 1  # actors hosting the agent; tasks go round-robin
    num_cpus: float = 1  # per actor (fractions allowed); also its torch threads (at least 1)
    num_gpus: float = 0  # per actor (fractions allowed)
    max_concurrency: int = 64  # calls an actor accepts at once (batched ones share a model call)
    max_batch_size: int = 16  # 1: no batching, a plain synchronous actor serves the calls
    max_wait_ms: float = 5.0  # how long a forming batch waits for calls it expects (batching.py)
    max_retries: int = 2  # actor restarts, and re-runs of the calls in flight when it died
    max_pending: int = 256  # tasks in flight per RayAgent (backpressure)
    when_full: Literal["wait", "error"] = "wait"  # at max_pending: wait, or a busy error Result
    address: str | None = None  # Ray cluster; None: RAY_ADDRESS, else a new local cluster
    startup_timeout_s: float = 300  # until every replica has loaded its model

    def __post_init__(self) -> None:
        _integer("replicas", self.replicas, 1)
        _number("num_cpus", self.num_cpus, 0, inclusive=False)
        _number("num_gpus", self.num_gpus, 0)
        _integer("max_concurrency", self.max_concurrency, 1)
        _integer("max_batch_size", self.max_batch_size, 1)
        _number("max_wait_ms", self.max_wait_ms, 0)
        _integer("max_retries", self.max_retries, 0)
        _integer("max_pending", self.max_pending, 1)
        if self.when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {WHEN_FULL}, got {self.when_full!r}")
        if self.address is not None and not (isinstance(self.address, str) and self.address):
            raise ValueError(f"address must be a non-empty string or None, got {self.address!r}")
        _number("startup_timeout_s", self.startup_timeout_s, 0, inclusive=False)


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _number(name: str, value: object, minimum: float, inclusive: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value >= minimum if inclusive else value > minimum):  # type: ignore[operator]
        raise ValueError(
            f"{name} must be a number {'>=' if inclusive else '>'} {minimum}, got {value!r}"
        )

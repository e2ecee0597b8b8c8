"""What an agent hands back: the output, how sure it was, and the path that produced it.

Every agent call appends a :class:`Step`; patterns concatenate their children's steps, so a
Result shows the full path (which agents ran, the confidence behind each decision, tokens,
latency and cost per agent). Errors caused by the input or the model are Results with ``error``
set, never exceptions through a batch.

A confidence of None means "no confidence available" (a backend that gives no token
probabilities, such as an HTTP endpoint without logprobs); it is never replaced by a made-up
number. Patterns say how they treat it (a Cascade accepts such an answer).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    """One request. ``meta`` carries anything the caller wants back (a gold label, a source row)."""

    text: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """One agent call inside a request, or one decision a pattern made."""

    agent: str
    output: Any = None
    confidence: float | None = 0.0  # None: no confidence available
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    start_s: float = 0.0  # wall clock (time.time()), so spans line up across processes
    end_s: float = 0.0
    decision: str = ""  # what a pattern decided here and why ("escalate: 0.41 < 0.60")
    error: str | None = None
    kind: str = "function"  # "llm", "classifier", "function" or "decision"

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Result:
    task_id: str
    output: Any = None
    confidence: float | None = 0.0  # None: no confidence available
    path: list[Step] = field(default_factory=list)
    latency_s: float = 0.0
    error: str | None = None
    trace_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def agents(self) -> list[str]:
        """Agents that ran, in order (pattern decision steps included)."""
        return [s.agent for s in self.path]

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.path)

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.path)

    def usage_by_agent(self) -> dict[str, dict[str, float]]:
        """Tokens, cost and latency summed per agent name."""
        usage: dict[str, dict[str, float]] = {}
        for s in self.path:
            row = usage.setdefault(
                s.agent, {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "latency_s": 0.0}
            )
            row["prompt_tokens"] += s.prompt_tokens
            row["completion_tokens"] += s.completion_tokens
            row["cost"] += s.cost
            row["latency_s"] += s.latency_s
        return usage


def now() -> float:
    return time.time()


def weakest(confidences: Iterable[float | None]) -> float | None:
    """The lowest of the known confidences; None when none is known (a result is only as sure
    as its least sure part, and an unknown part neither raises nor lowers that)."""
    known = [c for c in confidences if c is not None]
    return min(known) if known else None


def shown(confidence: float | None) -> str:
    """A confidence for a decision text: ``0.42``, or ``n/a`` when none is available."""
    return "n/a" if confidence is None else f"{confidence:.2f}"

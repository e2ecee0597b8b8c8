"""Helpers every pattern shares: record a decision, and extend a child's Result with it."""

from __future__ import annotations

from dataclasses import replace

from slm_agents.result import Result, Step, now


def decision(pattern: str, text: str, confidence: float | None = 0.0) -> Step:
    """A zero-cost step that records what a pattern decided and why."""
    t = now()
    return Step(pattern, confidence=confidence, start_s=t, end_s=t, decision=text, kind="decision")


def chain(first: Result, *steps: Step, then: Result | None = None) -> Result:
    """``first``'s path, then ``steps``, then ``then``'s path; output and error from the last."""
    last = then or first
    path = [*first.path, *steps, *(then.path if then else [])]
    return replace(
        last,
        path=path,
        latency_s=max(s.end_s for s in path) - min(s.start_s for s in path),
        meta={**first.meta, **last.meta},
    )

"""Traces built from Results: one trace per request, a span per Step of its path.

Steps carry wall-clock start and end times, so spans are placed where they ran, in this
process or in a Ray actor: the actor never needs MLflow, and nothing crosses a process boundary
but the Result. Each step's span carries its token usage in MLflow's own attribute, so the
trace's ``token_usage`` is the request's total. Outputs are JSON structures, not reprs: a
step's span shows the step's output (its error is the span status's description), the root
shows ``{"output", "error"}`` of the Result. The steps of the agents named in ``llm_tier``
carry ``"tier": "llm"``, so the LLM-tier calls can be found in the store again (the flywheel).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from slm_agents.tracking.payload import to_json, token_usage
from slm_agents.tracking.store import get_tracker

SPAN_TYPES = {"llm": "LLM", "classifier": "CLASSIFIER", "function": "TOOL", "decision": "CHAIN"}
TIER_ATTRIBUTE = "tier"  # "llm" on the spans of LLM-tier agents


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _trace_one(
    result: Any, task: Any, name: str, stored: Any, llm_tier: Collection[str] = ()
) -> None:
    """``stored``: what a string becomes in the store (``Tracker.stored``: redacted)."""
    import mlflow
    from mlflow.entities import SpanStatus

    def error(message: str | None) -> str | None:
        return stored(message) if message else message

    if not result.path:
        return
    root = mlflow.start_span_no_context(
        name,
        span_type="AGENT",
        inputs=None
        if task is None
        else {"task": to_json(getattr(task, "text", task), text=stored)},
        attributes={"task_id": result.task_id, "cost": result.cost, "agents": result.agents},
        start_time_ns=_ns(min(s.start_s for s in result.path)),
    )
    for step in result.path:
        attributes: dict[str, Any] = {
            "model": step.model or "",
            "confidence": step.confidence,
            "cost": step.cost,
            "decision": step.decision,
        }
        if step.agent in llm_tier and step.kind != "decision":
            attributes[TIER_ATTRIBUTE] = "llm"
        if step.prompt_tokens or step.completion_tokens:
            attributes.update(token_usage(step.prompt_tokens, step.completion_tokens))
        child = mlflow.start_span_no_context(
            step.agent,
            span_type=SPAN_TYPES.get(step.kind, "UNKNOWN"),
            parent_span=root,
            attributes=attributes,
            start_time_ns=_ns(step.start_s),
        )
        child.end(
            outputs=to_json(step.output, text=stored),
            status=SpanStatus("ERROR", error(step.error)) if step.error else "OK",
            end_time_ns=_ns(step.end_s),
        )
    root.end(
        outputs={"output": to_json(result.output, text=stored), "error": error(result.error)},
        status="ERROR" if result.error else "OK",
        end_time_ns=_ns(max(s.end_s for s in result.path)),
    )
    result.trace_id = root.trace_id


def trace_results(
    results: list[Any],
    tasks: list[Any] | None = None,
    name: str = "request",
    llm_tier: Collection[str] = (),
) -> None:
    """One trace per request: a root span, and a child span per Step of its path.

    ``llm_tier``: agent names whose steps are marked ``"tier": "llm"``.

    Sets each Result's ``trace_id``. No-op when tracking is inactive (outside a run and
    without ``enable()``) or the store has failed.
    """
    tracker = get_tracker()
    if not tracker.active or not tracker.connect():
        return
    for i, result in enumerate(results):
        task = tasks[i] if tasks is not None else None
        tracker.fail_open(_trace_one, result, task, name, tracker.stored, llm_tier)

"""S1 Collect: the LLM-tier calls of an MLflow experiment's request traces, as Calls.

``slm-agents run`` writes one trace per request with a span per step, and marks the spans of
the team's LLM-tier agents ``"tier": "llm"`` (``slm_agents.tracking.traces``). Each such span
that is a generation (span type ``LLM``) becomes a :class:`~.calls.Call`: the request's text (as
the store holds it: redacted unless the team kept raw text, and cut at the store's 2,000
characters a string), the span's output, model, token usage, cost, error, and the trace's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slm_agents.finetune.flywheel.calls import Call
from slm_agents.tracking.traces import TIER_ATTRIBUTE

PAGE = 500  # traces per search request


class CollectError(ValueError):
    """Nothing to collect: no such experiment, or no LLM-tier spans in it."""


@dataclass
class Collected:
    calls: list[Call]
    traces: int  # request traces read
    traces_with_calls: int  # ... that held an LLM-tier call
    experiment: str
    tracking_uri: str


def collect_calls(
    experiment: str,
    *,
    since: str | datetime | None = None,
    tracking_uri: str | None = None,
) -> Collected:
    """The LLM-tier calls in ``experiment``'s traces since ``since`` (ISO date or time, UTC
    when no zone is given), oldest first. A :class:`CollectError` when there are none."""
    import mlflow

    from slm_agents.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise CollectError(
            f"no experiment named {experiment!r} in {uri}; it has {names or 'none'} "
            "(slm-agents run logs to 'slm-agents' unless the tracker is configured otherwise)"
        )
    filter_string = None if since is None else f"trace.timestamp_ms >= {_epoch_ms(since)}"
    calls: list[Call] = []
    traces = with_calls = 0
    token = None
    while True:
        page = client.search_traces(
            locations=[found.experiment_id],
            filter_string=filter_string,
            max_results=PAGE,
            order_by=["timestamp_ms ASC"],
            page_token=token,
        )
        for trace in page:
            traces += 1
            found_calls = calls_of_trace(trace)
            with_calls += bool(found_calls)
            calls.extend(found_calls)
        token = page.token
        if not token:
            break
    if not calls:
        when = "" if since is None else f" since {since}"
        raise CollectError(
            f"no LLM-tier calls in the {traces} traces of experiment {experiment!r}{when}: "
            "run a team with an LLM-tier agent (tier: llm, or an endpoint agent) through "
            "`slm-agents run` with tracking on, then collect again"
        )
    calls.sort(key=lambda c: (c.timestamp or 0.0, c.id))
    return Collected(calls, traces, with_calls, experiment, uri)


def calls_of_trace(trace: Any) -> list[Call]:
    """The Calls of one request trace: its spans marked LLM tier that are generations."""
    from mlflow.tracing.constant import SpanAttributeKey, TokenUsageKey

    spans = trace.data.spans
    root = next((s for s in spans if s.parent_id is None), None)
    inputs = root.inputs if root is not None else None
    text = inputs.get("task") if isinstance(inputs, dict) else None
    timestamp = _trace_seconds(trace.info)
    out = []
    for span in spans:
        attributes = span.attributes or {}
        if attributes.get(TIER_ATTRIBUTE) != "llm" or span.span_type != "LLM":
            continue
        usage = attributes.get(SpanAttributeKey.CHAT_USAGE) or {}
        status = span.status
        failed = str(getattr(status.status_code, "value", status.status_code)) == "ERROR"
        out.append(
            Call(
                id=f"{trace.info.trace_id}/{span.span_id}",
                input=text if isinstance(text, str) else "",
                output=span.outputs,
                model=attributes.get("model") or None,
                prompt_tokens=int(usage.get(TokenUsageKey.INPUT_TOKENS, 0)),
                completion_tokens=int(usage.get(TokenUsageKey.OUTPUT_TOKENS, 0)),
                cost=attributes.get("cost"),
                timestamp=timestamp,
                error=(status.description or "failed") if failed else None,
                meta={
                    "agent": span.name,
                    "trace_id": trace.info.trace_id,
                    "task_id": (root.attributes or {}).get("task_id") if root else None,
                },
            )
        )
    return out


def _trace_seconds(info: Any) -> float | None:
    ms = getattr(info, "timestamp_ms", None)
    return None if ms is None else ms / 1000


def _epoch_ms(since: str | datetime) -> int:
    """``since`` (a datetime, or ISO 8601 text: ``2026-11-30`` or ``2026-11-30T08:00``) in
    epoch milliseconds; no zone means UTC."""
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CollectError(
                f"--since {since!r} is not a date: use ISO 8601, e.g. 2026-11-30 or "
                "2026-11-30T08:00"
            ) from exc
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return int(since.timestamp() * 1000)

"""Spans: a traced block (:func:`span`) and the span around each batched model call.

Model backends wrap each batched call in :func:`model_call`. It records a span (type LLM for
generation, CLASSIFIER for classification) carrying batch size, options, token usage (in
MLflow's own attribute, so the Traces page shows tokens) and errors, but only while tracking is
active: inside ``tracking.run(...)`` or after ``tracking.enable()``. Outside those it is a no-op
and MLflow is never imported, so ``import slm_agents`` stays light. Inputs and outputs are
JSON structures (:func:`~slm_agents.tracking.payload.to_json`), never Python reprs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from slm_agents.tracking.payload import to_json, token_usage
from slm_agents.tracking.store import Tracker, get_tracker

PROMPT_LIMIT = 500  # characters of each prompt or text shown in a model-call span


class _NullSpan:
    """Stands in for a span when tracking is off, so callers never branch."""

    def record(self, results: list[Any]) -> None:
        pass


class _ModelSpan:
    def __init__(self, span: Any, tracker: Tracker):
        self._span, self._tracker = span, tracker

    def record(self, results: list[Any]) -> None:
        """Attach usage, confidence and errors of a batch of Generation/Prediction results."""
        usage = [r.usage for r in results if getattr(r, "usage", None) is not None]
        errors = [r.error for r in results if r.error]
        attrs: dict[str, Any] = {"n_errors": len(errors)}
        if usage:
            attrs.update(
                token_usage(
                    sum(u.prompt_tokens for u in usage), sum(u.completion_tokens for u in usage)
                )
            )
        stored = self._tracker.stored
        outputs = [
            {"error": stored(r.error)}
            if r.error
            else {
                "output": to_json(
                    getattr(r, "text", None) or getattr(r, "label", None), text=stored
                ),
                "confidence": None if r.confidence is None else round(r.confidence, 4),
            }
            for r in results
        ]
        self._tracker.fail_open(self._span.set_attributes, attrs)
        self._tracker.fail_open(self._span.set_outputs, outputs)


@contextlib.contextmanager
def span(
    name: str, span_type: str = "UNKNOWN", inputs: Any = None, attributes: Any = None
) -> Iterator[Any]:
    """A traced block; a root span becomes a trace linked to the active run.

    ``inputs`` and ``attributes`` are stored as JSON (:func:`to_json`). Yields MLflow's live
    span, or a stand-in with the same ``record`` when tracking is off.
    """
    tracker = get_tracker()
    if not tracker.active or not tracker.connect():
        yield _NullSpan()
        return
    import mlflow

    manager = tracker.fail_open(mlflow.start_span, name=name, span_type=span_type)
    live = manager and tracker.fail_open(manager.__enter__)
    if live is None:
        yield _NullSpan()
        return
    tracker.fail_open(live.set_inputs, to_json(inputs, text=tracker.stored))
    tracker.fail_open(live.set_attributes, to_json(attributes or {}, text=tracker.stored))
    try:
        yield live
    except BaseException as exc:
        tracker.fail_open(manager.__exit__, type(exc), exc, exc.__traceback__)
        raise
    tracker.fail_open(manager.__exit__, None, None, None)


@contextlib.contextmanager
def without_model_spans() -> Iterator[None]:
    """No trace per model call inside this block: for jobs that trace each request instead
    (``trace_results``), whose spans already carry every agent call."""
    tracker = get_tracker()
    before, tracker.model_spans = tracker.model_spans, False
    try:
        yield
    finally:
        tracker.model_spans = before


@contextlib.contextmanager
def model_call(model: str, operation: str, inputs: list[Any], options: Any = None) -> Iterator[Any]:
    """The span a backend opens around one batched call; ``.record(results)`` adds usage.

    The span's inputs are the prompts or texts (each cut to 500 characters) and the options.
    """
    tracker = get_tracker()
    if not tracker.active or not tracker.model_spans:
        yield _NullSpan()
        return
    span_type = "CLASSIFIER" if operation == "predict" else "LLM"  # generate, stream
    attrs = {"model": model, "batch_size": len(inputs)}
    shown = {"inputs": [str(x)[:PROMPT_LIMIT] for x in inputs], "options": options}
    with span(f"{model}.{operation}", span_type, shown, attrs) as live:
        yield _ModelSpan(live, tracker) if not isinstance(live, _NullSpan) else live

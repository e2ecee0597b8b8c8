"""What spans carry: JSON-ready values, and token usage in MLflow's own format.

MLflow stores span inputs and outputs as JSON. Handing it ``str(obj)`` shows a Python repr
(``"{'intent': None, ...}"``) in the Traces page; handing it the structure shows fields the UI
can fold and search. Token usage under MLflow's ``CHAT_USAGE`` span attribute is what MLflow sums
into a trace's ``token_usage`` (children are counted unless an ancestor already carries usage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

TEXT_LIMIT = 2000  # characters per string in a span; whole prompts or documents bloat the store


def to_json(
    value: Any, text_limit: int = TEXT_LIMIT, text: Callable[[str], str] | None = None
) -> Any:
    """``value`` as dicts, lists, strings, numbers, booleans and None.

    Pydantic models become ``model_dump(mode="json")``, dataclasses their fields; mappings keep
    their keys (as strings), sequences and sets become lists; anything else becomes ``str``.
    Strings are cut to ``text_limit`` characters, then passed through ``text`` (the store's
    redaction, ``Tracker.stored``) when given.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return text(value[:text_limit]) if text else value[:text_limit]
    if not isinstance(value, type) and callable(getattr(value, "model_dump", None)):
        return to_json(value.model_dump(mode="json"), text_limit, text)  # a pydantic model
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value), text_limit, text)
    if isinstance(value, Mapping):
        return {str(key): to_json(item, text_limit, text) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item, text_limit, text) for item in value]
    return to_json(str(value), text_limit, text)


def token_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The span attribute MLflow reads token usage from (``mlflow.chat.tokenUsage``)."""
    from mlflow.tracing.constant import SpanAttributeKey, TokenUsageKey

    return {
        SpanAttributeKey.CHAT_USAGE: {
            TokenUsageKey.INPUT_TOKENS: int(input_tokens),
            TokenUsageKey.OUTPUT_TOKENS: int(output_tokens),
            TokenUsageKey.TOTAL_TOKENS: int(input_tokens) + int(output_tokens),
        }
    }

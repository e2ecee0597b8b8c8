"""Logged LLM calls: the flywheel's raw material, and the JSONL files that carry them.

A call log holds one JSON object a line, in either of two shapes:

* ours: ``{"id", "input", "output", "model", "usage": {"prompt_tokens", "completion_tokens"}}``
  with optional ``cost``, ``timestamp`` (ISO 8601 or epoch seconds), ``conversation_id``,
  ``error`` and ``meta``; ``output`` is the LLM's answer, a string or a JSON object;
* OpenAI chat format: ``{"messages": [...], "response": ...}`` where ``response`` is a whole
  ``chat.completion`` object or its assistant message; optional ``id``, ``model``,
  ``timestamp``, ``conversation_id``. The input is the text of the messages but the system
  prompt (kept in ``meta["system"]``); a reply to a JSON ``response_format`` is parsed.

A bad line is a :class:`LineError` naming its line number and what is wrong, and the rest of the
file is still read; a file with no usable call is a :class:`CallLogError`. Failed calls (an
``error``, or an answer cut off by the length limit) are read as calls with ``error`` set: the
curate step counts and drops them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slm_agents.pricing import DEFAULT_TABLE

UNFINISHED = {  # finish reasons of an answer that is not the whole answer
    "length": "the answer was cut off (finish_reason: length)",
    "content_filter": "the answer was filtered (finish_reason: content_filter)",
}


@dataclass
class Call:
    """One call to an LLM: what it was sent, what it answered, what it cost, and when.

    ``cost`` is priced with the default price table from ``model`` and the token counts when
    the log does not say; ``usage_estimated`` is True where the log had no token counts and
    they were taken as word counts (so a call without usage is not free in the cost shares).
    """

    id: str
    input: str
    output: str | dict[str, Any] | list[Any] | None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    timestamp: float | None = None  # epoch seconds, UTC
    conversation_id: str | None = None
    error: str | None = None
    usage_estimated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # where it came from (agent, trace)

    def __post_init__(self) -> None:
        if self.cost is None:
            self.cost = DEFAULT_TABLE.cost(self.model, self.prompt_tokens, self.completion_tokens)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The line :func:`write_calls` writes (our shape; :func:`read_calls` reads it back)."""
        line: dict[str, Any] = {
            "id": self.id,
            "input": self.input,
            "output": self.output,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "cost": self.cost,
            "timestamp": iso_time(self.timestamp),
            "conversation_id": self.conversation_id,
            "error": self.error,
        }
        if self.usage_estimated:
            line["usage_estimated"] = True
        if self.meta:
            line["meta"] = self.meta
        return line


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class CallLog:
    """What a call log held: the calls, and the lines that were not calls."""

    path: str
    calls: list[Call]
    errors: list[LineError]


class CallLogError(ValueError):
    """A call log with no usable call (empty, unreadable, or every line bad)."""


def read_calls(path: str | Path) -> CallLog:
    """Read a call log (either shape, mixed freely); see the module docstring."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CallLogError(f"cannot read the call log {path}: {exc}") from exc
    calls: list[Call] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            call = parse_line(line)
        except ValueError as exc:
            errors.append(LineError(number, str(exc)))
            continue
        if call.id in seen:
            errors.append(LineError(number, f"id {call.id!r} already used on line {seen[call.id]}"))
            continue
        seen[call.id] = number
        calls.append(call)
    if not calls:
        what = "is empty" if not errors else "has no usable call"
        shown = "".join(f"\n  {e}" for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise CallLogError(
            f"the call log {path} {what}: one JSON object a line, {{'id', 'input', 'output', "
            f"'model', 'usage'}} or OpenAI chat format {{'messages', 'response'}}{shown}{more}"
        )
    return CallLog(str(path), calls, errors)


def write_calls(path: str | Path, calls: list[Call]) -> Path:
    """Write ``calls`` as a call log in our shape, one JSON object a line (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for call in calls:
            f.write(json.dumps(call.to_json(), ensure_ascii=False) + "\n")
    return path


def parse_line(line: bytes | str) -> Call:
    """One line of a call log as a Call; a ``ValueError`` says what is wrong with it."""
    try:
        row = json.loads(line)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(row, dict):
        raise ValueError(f"a JSON {type(row).__name__}, not an object")
    if "messages" in row or "response" in row:
        return _from_openai(row)
    return _from_ours(row)


# ---------------------------------------------------------------- our shape
def _from_ours(row: dict[str, Any]) -> Call:
    missing = [key for key in ("input", "output") if key not in row]
    if missing:
        raise ValueError(
            f"no {' and no '.join(repr(k) for k in missing)} (keys: {sorted(row)}); a call "
            "needs 'input' and 'output', or OpenAI chat format's 'messages' and 'response'"
        )
    text = _text(row["input"], "input")
    output = _output(row["output"])
    usage = row.get("usage")
    prompt, completion, estimated = _usage(usage, text, output)
    return Call(
        id=_id(row.get("id"), text, output),
        input=text,
        output=output,
        model=_optional_str(row.get("model"), "model"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=_cost(row.get("cost")),
        timestamp=parse_time(row.get("timestamp")),
        conversation_id=_optional_str(row.get("conversation_id"), "conversation_id"),
        error=_error(row.get("error")),
        usage_estimated=estimated or row.get("usage_estimated") is True,
        meta=row["meta"] if isinstance(row.get("meta"), dict) else {},
    )


# ---------------------------------------------------------------- OpenAI chat format
def _from_openai(row: dict[str, Any]) -> Call:
    messages, response = row.get("messages"), row.get("response")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of chat messages")
    if response is None:
        raise ValueError("no 'response' (the chat.completion object or the assistant message)")
    if not isinstance(response, dict):
        raise ValueError(f"'response' is a JSON {type(response).__name__}, not an object")
    system, text = _chat_input(messages)
    completion = response if "choices" in response else None
    message, finish = _assistant_message(response)
    output = _reply(message, _wants_json(row))
    prompt, completion_tokens, estimated = _usage(
        (completion or {}).get("usage") or row.get("usage"), text, output
    )
    model = row.get("model") or (completion or {}).get("model")
    meta = {"system": system} if system else {}
    return Call(
        id=_id(row.get("id") or (completion or {}).get("id"), text, output),
        input=text,
        output=output,
        model=_optional_str(model, "model"),
        prompt_tokens=prompt,
        completion_tokens=completion_tokens,
        cost=_cost(row.get("cost")),
        timestamp=parse_time(row.get("timestamp") or (completion or {}).get("created")),
        conversation_id=_optional_str(row.get("conversation_id"), "conversation_id"),
        error=_error(row.get("error")) or UNFINISHED.get(finish or ""),
        usage_estimated=estimated,
        meta=meta,
    )


def _chat_input(messages: list[Any]) -> tuple[str, str]:
    """(the system prompt, the text sent): one message's content, or ``role: content`` lines."""
    system, turns = [], []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"messages[{i}] is not a chat message with a 'role'")
        content = _content(message.get("content"), f"messages[{i}].content")
        if message["role"] in ("system", "developer"):
            system.append(content)
        else:
            turns.append((message["role"], content))
    if not turns:
        raise ValueError("'messages' hold only a system prompt: nothing was asked")
    if len(turns) == 1:
        return "\n\n".join(system), turns[0][1]
    return "\n\n".join(system), "\n\n".join(f"{role}: {content}" for role, content in turns)


def _assistant_message(response: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    if "choices" not in response:
        if "content" not in response:
            raise ValueError(
                "'response' is neither a chat.completion (no 'choices') nor a message "
                "(no 'content')"
            )
        return response, None
    choices = response["choices"]
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("'response.choices' must be a non-empty list")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("'response.choices[0]' has no 'message'")
    return message, choices[0].get("finish_reason")


def _reply(message: dict[str, Any], wants_json: bool) -> str | dict[str, Any] | list | None:
    if message.get("content") is None:
        if message.get("tool_calls"):
            raise ValueError("the response holds tool calls, not a text or JSON answer")
        return None  # a failed or refused call: kept, and dropped by curate as invalid
    text = _content(message["content"], "the response's content")
    if wants_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # asked for JSON, answered otherwise: curate judges it
    return text


def _wants_json(row: dict[str, Any]) -> bool:
    response_format = row.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    return kind in ("json_object", "json_schema")


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(content) or not all(isinstance(p, str) for p in parts):
            raise ValueError(f"{where} has parts that are not text (only text calls are used)")
        return "\n".join(parts)
    raise ValueError(f"{where} must be a string or a list of text parts, not {content!r:.60}")


# ---------------------------------------------------------------- fields
def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string, got {type(value).__name__}")
    return value


def _output(value: Any) -> str | dict[str, Any] | list | None:
    if value is None or isinstance(value, str | dict | list):
        return value
    raise ValueError(f"'output' must be a string or a JSON object, got {type(value).__name__}")


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"'{name}' must be a string, got {type(value).__name__}")


def _error(value: Any) -> str | None:
    if value in (None, "", False):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _cost(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"'cost' must be a number >= 0, got {value!r}")
    return float(value)


def _usage(usage: Any, text: str, output: Any) -> tuple[int, int, bool]:
    """(prompt tokens, completion tokens, estimated): word counts when the log has no usage."""
    if usage is None:
        answer = output if isinstance(output, str) else json.dumps(output or "")
        return len(text.split()), len(answer.split()), True
    if not isinstance(usage, dict):
        raise ValueError(f"'usage' must be an object, got {type(usage).__name__}")
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"'usage.{key}' must be an integer >= 0, got {value!r}")
        counts.append(value)
    return counts[0], counts[1], False


def _id(value: Any, text: str, output: Any) -> str:
    """The log's id, or one made from the content (stable across reads of the same log)."""
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise ValueError(f"'id' must be a non-empty string or an integer, got {value!r}")
        return str(value)
    digest = hashlib.sha256(json.dumps([text, output], sort_keys=True).encode()).hexdigest()
    return f"call-{digest[:16]}"


def parse_time(value: Any) -> float | None:
    """Epoch seconds from ISO 8601 (no zone: UTC) or a number (seconds, or milliseconds)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"'timestamp' must be ISO 8601 or epoch seconds, got {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)  # ms from 1973 on
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"'timestamp' {value!r:.40} is not ISO 8601") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise ValueError(f"'timestamp' must be ISO 8601 or epoch seconds, got {value!r:.40}")


def iso_time(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()

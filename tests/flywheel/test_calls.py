"""Call logs: our shape and OpenAI chat format, a bad line is its own error, round trips."""

from __future__ import annotations

import json

import pytest

from slm_agents.finetune.flywheel.calls import Call, CallLogError, read_calls, write_calls
from slm_agents.pricing import DEFAULT_TABLE


def write_lines(path, *lines) -> str:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return str(path)


OURS = {
    "id": "c1",
    "input": "My card has not arrived yet",
    "output": "card_arrival",
    "model": "gpt-4o-mini",
    "usage": {"prompt_tokens": 40, "completion_tokens": 3},
    "timestamp": "2026-11-30T08:00:00Z",
    "conversation_id": "conv-7",
}
COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1764489600,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"total": "12.50", "date": "2026-11-01"}'},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320},
}
CHAT = {
    "messages": [
        {"role": "system", "content": "Extract the receipt's total and date as JSON."},
        {"role": "user", "content": [{"type": "text", "text": "TOTAL 12.50  01/11/2026"}]},
    ],
    "response": COMPLETION,
    "response_format": {"type": "json_object"},
}


def test_our_shape_is_read_with_cost_priced_from_the_usage(tmp_path):
    log = read_calls(write_lines(tmp_path / "calls.jsonl", OURS))
    assert log.errors == []
    (call,) = log.calls
    assert (call.id, call.input, call.output, call.model) == (
        "c1", "My card has not arrived yet", "card_arrival", "gpt-4o-mini",
    )  # fmt: skip
    assert (call.prompt_tokens, call.completion_tokens, call.usage_estimated) == (40, 3, False)
    assert call.cost == pytest.approx(DEFAULT_TABLE.cost("gpt-4o-mini", 40, 3))
    assert call.timestamp == 1796025600.0 and call.conversation_id == "conv-7" and call.ok


def test_a_json_answer_stays_an_object_and_a_logged_cost_is_kept(tmp_path):
    line = {**OURS, "output": {"intent": "card_arrival"}, "cost": 0.25}
    (call,) = read_calls(write_lines(tmp_path / "calls.jsonl", line)).calls
    assert call.output == {"intent": "card_arrival"} and call.cost == 0.25


def test_openai_chat_format_with_a_whole_completion(tmp_path):
    (call,) = read_calls(write_lines(tmp_path / "calls.jsonl", CHAT)).calls
    assert call.id == "chatcmpl-abc" and call.model == "gpt-4o"
    assert call.input == "TOTAL 12.50  01/11/2026"  # the text sent; the system prompt aside
    assert call.meta == {"system": "Extract the receipt's total and date as JSON."}
    assert call.output == {"total": "12.50", "date": "2026-11-01"}  # JSON asked, JSON kept
    assert (call.prompt_tokens, call.completion_tokens) == (300, 20)
    assert call.timestamp == 1764489600.0


def test_openai_chat_format_with_only_the_message_and_a_conversation(tmp_path):
    line = {
        "id": 17,
        "conversation_id": "conv-1",
        "messages": [
            {"role": "user", "content": "Where is my transfer?"},
            {"role": "assistant", "content": "Which one?"},
            {"role": "user", "content": "The one from Monday."},
        ],
        "response": {"role": "assistant", "content": "It is pending."},
        "timestamp": 1764489600123,  # milliseconds
    }
    (call,) = read_calls(write_lines(tmp_path / "calls.jsonl", line)).calls
    assert call.id == "17" and call.output == "It is pending."
    assert call.input == (
        "user: Where is my transfer?\n\nassistant: Which one?\n\nuser: The one from Monday."
    )
    assert call.timestamp == pytest.approx(1764489600.123)
    assert call.usage_estimated and call.prompt_tokens == 13 and call.completion_tokens == 3
    assert call.cost > 0  # no usage logged: priced from word counts, never free


def test_failed_and_cut_off_calls_are_read_as_failed_calls(tmp_path):
    cut = {**COMPLETION, "choices": [{**COMPLETION["choices"][0], "finish_reason": "length"}]}
    path = write_lines(
        tmp_path / "calls.jsonl",
        {**OURS, "output": None, "error": "timeout after 30 s"},
        {**CHAT, "response": cut},
    )
    failed, cut_off = read_calls(path).calls
    assert failed.error == "timeout after 30 s" and failed.output is None
    assert cut_off.error == "the answer was cut off (finish_reason: length)"


def test_each_bad_line_is_its_own_error_and_the_rest_is_read(tmp_path):
    path = write_lines(
        tmp_path / "calls.jsonl",
        OURS,
        "{not json",
        "",
        [1, 2],
        {"input": "no answer here"},
        {**OURS, "id": "c2", "input": 42},
        {**OURS, "id": "c3", "usage": {"prompt_tokens": -1}},
        {**OURS, "id": "c4", "timestamp": "last tuesday"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "system", "content": "x"}], "response": {"content": "y"}},
        {**OURS},  # the same id again
        {**OURS, "id": "c5"},
    )
    log = read_calls(path)
    assert [c.id for c in log.calls] == ["c1", "c5"]
    messages = {e.line: e.message for e in log.errors}
    assert sorted(messages) == [2, 4, 5, 6, 7, 8, 9, 10, 11]  # line 3 is blank: skipped
    assert messages[2].startswith("not JSON")
    assert "not an object" in messages[4]
    assert "'output'" in messages[5]
    assert "'input' must be a string" in messages[6]
    assert "usage.prompt_tokens" in messages[7]
    assert "not ISO 8601" in messages[8]
    assert "'response'" in messages[9]
    assert "only a system prompt" in messages[10]
    assert "already used on line 1" in messages[11]
    assert str(log.errors[0]).startswith("line 2: ")


def test_an_empty_file_or_one_without_a_usable_call_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CallLogError, match="is empty"):
        read_calls(empty)
    bad = write_lines(tmp_path / "bad.jsonl", "nope", {"text": "wrong keys"})
    with pytest.raises(CallLogError, match="no usable call") as info:
        read_calls(bad)
    assert "line 1: not JSON" in str(info.value) and "line 2: no 'input'" in str(info.value)
    with pytest.raises(CallLogError, match="cannot read"):
        read_calls(tmp_path / "missing.jsonl")


def test_written_calls_read_back_the_same(tmp_path):
    calls = read_calls(write_lines(tmp_path / "in.jsonl", OURS, CHAT)).calls
    calls.append(Call("x", "a question", "an answer", usage_estimated=True, meta={"agent": "a"}))
    out = write_calls(tmp_path / "out" / "calls.jsonl", calls)
    assert read_calls(out).calls == calls

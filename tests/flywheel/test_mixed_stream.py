"""The mixed call stream: real data-set rows, real token counts, a hidden task per call."""

from __future__ import annotations

import pytest

from slm_agents.finetune.flywheel.calls import read_calls
from slm_agents.finetune.flywheel.stream import (
    MODEL,
    RECEIPT_SYSTEM,
    build_stream,
    mixed_stream,
    next_week,
    write_stream,
)
from slm_agents.pricing import DEFAULT_TABLE, HOSTED_LLM
from slm_agents.specialists.receipts import FIELDS

SIZES = {"tickets": 40, "receipts": 12, "coding": 8}


@pytest.fixture(scope="module")
def stream():
    return build_stream(**SIZES, weeks=2, seed=3)


def test_counts_ids_and_hidden_tasks(stream):
    assert stream.counts() == SIZES
    ids = [call.id for call in stream.calls]
    assert len(set(ids)) == len(ids) == sum(SIZES.values())
    assert set(stream.task_of) == set(ids)
    assert all("task" not in call.meta for call in stream.calls)
    # tasks are interleaved, not in blocks
    tasks = [stream.task_of[i] for i in ids]
    assert sum(a != b for a, b in zip(tasks, tasks[1:], strict=False)) > 10


def test_times_increase_within_the_weeks(stream):
    times = [call.timestamp for call in stream.calls]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert stream.start <= times[0] and times[-1] < stream.end
    assert stream.end - stream.start == 2 * 7 * 24 * 3600


def test_answers_usage_and_cost(stream):
    for call in stream.calls:
        task = stream.task_of[call.id]
        assert call.model == MODEL and call.prompt_tokens > 0 and call.completion_tokens > 0
        assert call.cost == DEFAULT_TABLE.cost(
            HOSTED_LLM, call.prompt_tokens, call.completion_tokens
        )
        assert call.meta["system"] and call.conversation_id
        if task == "receipts":
            assert list(call.output) == list(FIELDS)
            assert call.meta == {
                "system": RECEIPT_SYSTEM,
                "response_format": {"type": "json_object"},
            }
        else:
            assert isinstance(call.output, str) and call.output
        if task == "tickets":  # the system prompt (77 intents) is counted in the prompt
            assert call.prompt_tokens > 300 and call.output in call.meta["system"]
    totals = stream.totals()
    assert {t: row["calls"] for t, row in totals.items()} == SIZES


def test_the_same_seed_gives_the_same_stream(stream):
    again = mixed_stream(**SIZES, weeks=2, seed=3)
    assert [c.to_json() for c in again] == [c.to_json() for c in stream.calls]


def test_next_week_has_new_inputs_later(stream):
    week = next_week(stream, tickets=30, receipts=5, coding=0)
    assert week.counts() == {"tickets": 30, "receipts": 5, "coding": 0}
    assert not {c.input for c in week.calls} & {c.input for c in stream.calls}
    assert not set(week.task_of) & set(stream.task_of)
    assert week.calls[0].timestamp >= stream.end and week.start == stream.end
    later = next_week(week, tickets=10)
    seen = {c.input for c in stream.calls + week.calls}
    assert not {c.input for c in later.calls} & seen


def test_an_exhausted_data_set_is_an_error(stream):
    with pytest.raises(ValueError, match="only 92 new rows are left"):
        next_week(stream, tickets=0, coding=100)


def test_written_stream_reads_back(stream, tmp_path):
    path = write_stream(tmp_path / "calls.jsonl", stream)
    log = read_calls(path)
    assert not log.errors
    assert [c.to_json() for c in log.calls] == [c.to_json() for c in stream.calls]

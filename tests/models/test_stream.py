"""CausalLM.stream: text deltas as tokens are decoded, then the Generation generate returns."""

from __future__ import annotations

import gc

import pytest
from pydantic import BaseModel

from slm_agents import tracking
from slm_agents.models import Generation, Request

COUNT = "Count from 1 to 20, separated by commas."


def split(items: list) -> tuple[list[str], Generation]:
    *deltas, final = items
    assert all(isinstance(d, str) and d for d in deltas)
    assert isinstance(final, Generation)
    return deltas, final


def assert_same_generation(got: Generation, want: Generation) -> None:
    assert got.ok == want.ok and got.error == want.error
    assert got.text == want.text and got.token_ids == want.token_ids
    assert got.finish_reason == want.finish_reason and got.usage == want.usage
    assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-4)
    assert got.parsed == want.parsed


CHAT = [
    {"role": "system", "content": "You are Zorblax, a support bot for a bank."},
    {"role": "user", "content": "What is your name?"},
]


@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        ("What is the capital of France?", {"max_new_tokens": 24}),  # ends with end-of-turn
        (CHAT, {"max_new_tokens": 20}),
        (COUNT, {"max_new_tokens": 40}),  # cut by max_new_tokens
        (COUNT, {"max_new_tokens": 40, "stop": ["\n4.", "never appears"]}),  # held back
    ],
    ids=["plain", "chat", "length", "stop"],
)
def test_deltas_join_to_the_text_generate_returns(slm, prompt, options):
    deltas, final = split(list(slm.stream(prompt, **options)))
    [expected] = slm.generate([prompt], **options)
    assert_same_generation(final, expected)
    assert "".join(deltas) == final.text
    assert len(deltas) > 1  # streamed, not handed over at the end


def test_a_stop_string_never_reaches_the_deltas(slm):
    deltas, final = split(list(slm.stream(COUNT, max_new_tokens=40, stop=["7"])))
    assert final.finish_reason == "stop" and "6" in final.text
    assert not any("7" in d for d in deltas)


def test_a_json_schema_stream_ends_with_the_parsed_object(slm):
    class City(BaseModel):
        name: str
        country: str

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "country": {"type": "string", "maxLength": 20},
        },
        "required": ["name", "country"],
    }
    prompt = "Give the capital of France as JSON with name and country."
    deltas, final = split(list(slm.stream(prompt, json_schema=schema, max_new_tokens=40)))
    [expected] = slm.generate([prompt], json_schema=schema, max_new_tokens=40)
    assert_same_generation(final, expected)
    assert final.ok and isinstance(final.parsed, dict) and "".join(deltas) == final.text
    request = Request(prompt, json_schema=City)
    *_, typed = slm.stream(request, max_new_tokens=40)
    assert typed.parsed == City.model_validate(final.parsed)


def test_closing_early_stops_decoding_and_releases_the_lock(slm, monkeypatch):
    lengths: list[int] = []
    inner = slm.model.generate

    def measured(*args, **kwargs):
        sequences = inner(*args, **kwargs)
        lengths.append(sequences.shape[1] - kwargs["input_ids"].shape[1])
        return sequences

    monkeypatch.setattr(slm.model, "generate", measured)
    stream = slm.stream("Count from 1 to 500, separated by commas.", max_new_tokens=400)
    assert not slm._lock.locked()  # nothing runs before the first next()
    assert isinstance(next(stream), str)
    assert slm._lock.locked()  # held while the stream is open
    stream.close()
    assert not slm._lock.locked()
    assert lengths and lengths[0] < 20  # the worker stopped; unstopped it ran 120 tokens

    abandoned = slm.stream(COUNT, max_new_tokens=400)
    next(abandoned)
    del abandoned  # garbage: the generator is closed, same as close()
    gc.collect()
    assert not slm._lock.locked()
    assert len(lengths) == 2 and lengths[1] < 20
    assert slm.generate(["Say hello."], max_new_tokens=8)[0].ok


def test_a_bad_prompt_yields_only_the_error_generation(slm):
    [only] = list(slm.stream(""))
    assert isinstance(only, Generation)
    assert only.error == "request 0: prompt is empty" and only.finish_reason == "error"
    [huge] = list(slm.stream("word " * 9000))
    assert "tokens but the context is" in huge.error
    with pytest.raises(ValueError, match="max_new_tokens"):  # options fail at the call
        slm.stream("hello", max_new_tokens=0)
    with pytest.raises(TypeError, match="one prompt"):
        slm.stream(["one", "two"])
    with pytest.raises(ValueError, match="no adapters are loaded"):
        slm.stream("hello", adapter="missing")


def test_a_stream_is_one_llm_span_with_usage(mlflow_store, slm):
    import mlflow

    with tracking.run("stream") as run_id:
        *_, final = slm.stream("What is the capital of France?", max_new_tokens=8)
    [trace] = mlflow.search_traces(run_id=run_id, return_type="list")
    [span] = trace.data.spans
    assert span.name == "smollm2-135m-instruct.stream" and span.span_type == "LLM"
    usage = span.attributes["mlflow.chat.tokenUsage"]
    assert usage["output_tokens"] == final.usage.completion_tokens
    assert usage["input_tokens"] == final.usage.prompt_tokens

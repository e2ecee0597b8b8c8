"""``slm-agents serve`` over real HTTP with the official ``openai`` client: routes, adapters,
batching, streaming, teams, and every error status the server promises."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest
from server_process import API_KEY, MODEL, TIGHT

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "department": {"type": "string", "enum": ["cards", "transfers", "account"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["department", "urgent"],
    "additionalProperties": False,
}


def chat(server, model=MODEL, **options):
    options = {"messages": HELLO, "max_tokens": 12} | options
    return server.client().chat.completions.create(model=model, **options)


def test_health_and_model_list(server):
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200
    models = {m.id: m for m in server.client().models.list().data}
    assert {MODEL, TIGHT, f"{MODEL}:alpha", f"{MODEL}:beta", "team:desk"} <= set(models)
    assert models[f"{MODEL}:alpha"].model_extra["parent"] == MODEL
    assert models[MODEL].model_extra["parent"] is None


def test_chat_completion_with_usage_and_logprobs(server):
    reply = chat(server, logprobs=True)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 12
    tokens = choice.logprobs.content
    assert len(tokens) == reply.usage.completion_tokens
    assert all(t.logprob <= 0 for t in tokens)
    assert "".join(t.token for t in tokens).strip().startswith(choice.message.content.strip()[:5])
    # the same greedy request without logprobs gives the same text
    assert chat(server).choices[0].message.content == choice.message.content
    assert math.exp(sum(t.logprob for t in tokens) / len(tokens)) > 0


def test_text_completion(server):
    reply = server.client().completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=6
    )
    assert reply.object == "text_completion" and reply.choices[0].text.strip()
    assert reply.usage.completion_tokens <= 6


def test_twenty_json_schema_prompts_give_twenty_valid_objects(server):
    tickets = [f"Ticket {i}: my card {'was stolen' if i % 2 else 'is late'}" for i in range(20)]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "ticket", "schema": TICKET_SCHEMA, "strict": True},
    }

    def ask(text):
        messages = [{"role": "user", "content": f"Route this ticket as JSON: {text}"}]
        return server.client().chat.completions.create(
            model=MODEL, messages=messages, max_tokens=40, response_format=response_format
        )

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(ask, tickets))
    for reply in replies:
        jsonschema.validate(json.loads(reply.choices[0].message.content), TICKET_SCHEMA)
    # requests that arrived together shared forward passes
    assert max(r.model_extra["slm_agents"]["batch_size"] for r in replies) > 1


def test_streaming_sends_the_same_text_in_pieces(server):
    whole = chat(server, max_tokens=24).choices[0].message.content
    stream = server.client().chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    pieces = [d.content for d in deltas if d.content]
    assert len(pieces) > 1
    assert "".join(pieces) == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_an_adapter_changes_the_output(server):
    base = chat(server).choices[0].message.content
    alpha = chat(server, model=f"{MODEL}:alpha").choices[0].message.content
    assert alpha != base


def test_two_adapters_share_one_forward_pass(server):
    def ask(model):
        return chat(server, model=model, max_tokens=8)

    alone = {m: ask(f"{MODEL}:{m}").choices[0].message.content for m in ("alpha", "beta")}
    models = [f"{MODEL}:alpha", f"{MODEL}:beta"] * 4
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, models))
    mixed = [r.model_extra["slm_agents"]["batch_adapters"] for r in replies]
    assert any({"alpha", "beta"} <= set(adapters) for adapters in mixed), mixed
    for model, reply in zip(models, replies, strict=True):
        assert reply.choices[0].message.content == alone[model.split(":")[1]]


def test_a_team_answers_as_a_model(server):
    reply = server.client().chat.completions.create(
        model="team:desk", messages=[{"role": "user", "content": "My card was stolen yesterday"}]
    )
    answer = json.loads(reply.choices[0].message.content)
    assert answer["department"] == "cards"
    extra = reply.model_extra["slm_agents"]
    assert extra["path"][0]["agent"] == "desk" and 0 < extra["confidence"] <= 1
    assert extra["escalations"] == 0 and extra["cost_usd"] > 0


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": MODEL}, "messages", "Field required"),
        ({"model": MODEL, "messages": []}, "messages", "at least 1"),
        ({"model": MODEL, "messages": HELLO, "temperature": "hot"}, "temperature", "number"),
        ({"model": MODEL, "messages": [{"role": "user", "content": " "}]}, "messages", "empty"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 100_000}, "max_tokens", "context"),
        ({"model": MODEL, "messages": HELLO, "n": 2}, "n", "n=1"),
        (
            {"model": MODEL, "messages": HELLO, "response_format": {"type": "json_schema",
             "json_schema": {"name": "x", "schema": {"type": "object", "properties": 3}}}},
            "response_format", "schema",
        ),
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_field(server, body, param, says):
    response = server.post("/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == param and says.lower() in error["message"].lower(), error


def test_a_body_that_is_not_json_is_400(server):
    url = server.base_url + "/chat/completions"
    response = httpx.post(url, content=b"{not json", headers={"Authorization": f"Bearer {API_KEY}",
                          "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400 and error_of(response)["type"] == "invalid_request_error"


def test_unknown_models_and_adapters_are_404_listing_what_exists(server):
    response = server.post("/v1/chat/completions", {"model": "gpt-9", "messages": HELLO})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and f"{MODEL}:alpha" in error["message"]
    response = server.post("/v1/chat/completions", {"model": f"{MODEL}:gamma", "messages": HELLO})
    assert response.status_code == 404 and "'alpha', 'beta'" in error_of(response)["message"]
    with pytest.raises(openai.NotFoundError):
        chat(server, model="team:nobody")


def test_the_api_key_is_required(server):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
    for key in (None, "sk-wrong"):
        response = server.post("/v1/chat/completions", body, key=key)
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
        assert API_KEY not in response.text
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="sk-wrong").models.list()


def test_past_the_queue_bound_it_answers_429_then_serves(server):
    body = {"model": TIGHT, "messages": HELLO, "max_tokens": 6}
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: server.post("/v1/chat/completions", body), range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}, statuses
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    # a client that honours Retry-After gets its answer
    reply = server.client(max_retries=5).chat.completions.create(**body)
    assert reply.choices[0].message.content


def test_past_the_timeout_it_answers_504_and_stops_the_work(server):
    # counting goes on until max_tokens: about a minute and a half here
    body = {"model": TIGHT, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 1500}
    started = time.monotonic()
    response = server.post("/v1/completions", body)
    assert response.status_code == 504, response.text
    assert error_of(response)["type"] == "timeout"
    assert time.monotonic() - started < 30
    # the cancelled generation does not keep the one-request replica busy: a short request
    # right after answers within seconds
    started = time.monotonic()
    reply = server.client(max_retries=3).chat.completions.create(
        model=TIGHT, messages=HELLO, max_tokens=4
    )
    assert reply.choices[0].message.content
    assert time.monotonic() - started < 20


def test_top_logprobs_list_the_likeliest_tokens(server):
    reply = chat(server, logprobs=True, top_logprobs=3, max_tokens=6)
    for token in reply.choices[0].logprobs.content:
        assert len(token.top_logprobs) == 3
        best = token.top_logprobs[0]
        assert best.logprob >= token.top_logprobs[-1].logprob
        assert best.token == token.token and best.logprob == pytest.approx(token.logprob)  # greedy
    response = server.post("/v1/chat/completions", {"model": MODEL, "messages": HELLO,
                                                    "top_logprobs": 2})  # fmt: skip
    assert response.status_code == 400 and error_of(response)["param"] == "top_logprobs"


def test_top_logprobs_under_a_schema_or_top_p_stay_finite(server):
    """Tokens a constraint or top-p rules out have log-prob -inf: never sent (JSON cannot
    carry it, and the reply used to be a 500)."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    for options in ({"response_format": response_format},
                    {"temperature": 0.7, "top_p": 0.5, "seed": 1}):  # fmt: skip
        reply = chat(server, logprobs=True, top_logprobs=5, max_tokens=8, **options)
        for token in reply.choices[0].logprobs.content:
            assert all(math.isfinite(t.logprob) for t in token.top_logprobs)


def test_a_broken_adapter_is_a_500_that_names_it_without_a_traceback(server):
    body = {"model": f"{MODEL}:broken", "messages": HELLO, "max_tokens": 2}
    response = server.post("/v1/chat/completions", body)
    assert response.status_code == 500
    error = error_of(response)
    assert "adapter smollm2-135m-instruct:broken failed to load" in error["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert chat(server, model=f"{MODEL}:alpha").choices[0].message.content  # others still work


def test_without_the_key_a_bad_body_is_401_not_a_schema_lesson(server):
    response = server.post("/v1/chat/completions", {"model": MODEL, "temperature": "hot"}, key=None)
    assert response.status_code == 401 and "temperature" not in response.text

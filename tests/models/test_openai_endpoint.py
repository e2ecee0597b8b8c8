"""OpenAIEndpoint against a real HTTP server (tests/openai_fault_server.py) that scripts faults.

No models load here: the server is OpenAI-shaped and answers by rule, the client is the official
``openai`` package over real HTTP, and the faults (429, 5xx, garbage, timeouts, closed
connections) are real responses on the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import urllib.request
from email.utils import formatdate

import openai_fault_server
import pytest
from openai_fault_server import Fault, FaultServer, Reply
from pydantic import BaseModel, Field

from slm_agents import tracking
from slm_agents.agent import FunctionAgent, LLMAgent
from slm_agents.datasets import data_dir
from slm_agents.models import OpenAIEndpoint
from slm_agents.models.base import AdapterHost, TextGenerator, TokenAligned
from slm_agents.models.openai_endpoint import _retry_after_s
from slm_agents.patterns import Cascade, ParallelVerify, Route
from slm_agents.pricing import PriceTable
from slm_agents.specialists import Coder, Extractor, Planner
from slm_agents.specialists.coder import humaneval_task

fault_server = openai_fault_server.fault_server  # the fixture
KEY = "sk-test-7f3a9c1e5b2d4f60"
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
    "additionalProperties": False,
}


def endpoint(server: FaultServer, **kw) -> OpenAIEndpoint:
    """Fast retries, so a test of three retries takes milliseconds."""
    kw = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0, **kw}
    return OpenAIEndpoint(server.base_url, "gpt-4o-mini", **kw)


# ------------------------------------------------------------------------------ the protocol
def test_it_is_a_text_generator_and_nothing_more(fault_server):
    e = endpoint(fault_server)
    assert isinstance(e, TextGenerator) and e.name == "gpt-4o-mini"
    assert not isinstance(e, AdapterHost) and not isinstance(e, TokenAligned)
    assert OpenAIEndpoint(fault_server.base_url, "m", name="llm").name == "llm"


def test_a_batch_runs_concurrently_up_to_max_concurrency():
    # The server holds each reply until 3 requests are in flight: a client that sent them one
    # at a time would show 1 (after the gate's timeout), one that ignored the limit more than 3.
    with FaultServer(gate=3) as server:
        prompts = [f"question {i}" for i in range(12)]
        gens = endpoint(server, max_concurrency=3).generate(prompts)
    assert [g.text for g in gens] == prompts and all(g.ok for g in gens)
    assert server.max_in_flight == 3


def test_bad_prompts_fail_alone(fault_server):
    gens = endpoint(fault_server).generate(["fine", "", 42, b"bytes", [{"role": "user"}], "ok"])
    assert [g.ok for g in gens] == [True, False, False, False, False, True]
    assert "prompt is empty" in gens[1].error and "got <class 'int'>" in gens[2].error
    assert "bytes" in gens[3].error and "role and content" in gens[4].error
    assert len(fault_server.posts()) == 2


def test_unknown_options_and_regex_raise_naming_them(fault_server):
    e = endpoint(fault_server)
    with pytest.raises(TypeError, match="num_beams"):
        e.generate(["x"], num_beams=4)
    with pytest.raises(ValueError, match="regex"):
        e.generate(["x"], regex="[0-9]+")
    with pytest.raises(ValueError, match="max_new_tokens"):
        e.generate(["x"], max_new_tokens=0)
    assert fault_server.posts() == []


# ------------------------------------------------------------------------------ retries
def test_a_429_is_retried_after_its_retry_after(fault_server):
    fault_server.push(Fault.http(429, "slow down", retry_after="1"))
    [gen] = endpoint(fault_server).generate(["hello"])
    assert gen.ok and gen.text == "hello"
    first, second = fault_server.posts()
    assert second.arrived - first.arrived >= 1.0  # the server's clock, not the test's


def test_a_retry_after_beyond_the_cap_waits_the_cap(fault_server):
    fault_server.push(Fault.http(429, retry_after="3600"))
    started = time.monotonic()
    [gen] = endpoint(fault_server, max_retry_after_s=0.2).generate(["hello"])
    assert gen.ok and time.monotonic() - started < 10


def test_retry_after_reads_seconds_and_http_dates():
    assert _retry_after_s({"retry-after": "2"}) == 2.0
    assert _retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert 1.0 <= _retry_after_s({"retry-after": formatdate(time.time() + 3, usegmt=True)}) <= 3.0
    assert _retry_after_s({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert _retry_after_s({"retry-after": "soon"}) is None and _retry_after_s({}) is None


@pytest.mark.parametrize("status", [500, 503, 408])
def test_server_errors_are_retried(fault_server, status):
    fault_server.push(Fault.http(status))
    [gen] = endpoint(fault_server).generate(["hello"])
    assert gen.ok and gen.text == "hello" and len(fault_server.posts()) == 2


def test_exhausted_retries_fail_that_prompt_while_the_rest_complete(fault_server):
    fault_server.push(Fault.http(503, "overloaded", when=lambda r: "doomed" in r.text, times=99))
    gens = endpoint(fault_server, max_retries=2).generate(["one", "doomed", "two"])
    assert [g.text for g in gens[::2]] == ["one", "two"] and gens[0].ok and gens[2].ok
    assert "503" in gens[1].error and "overloaded" in gens[1].error
    assert "after 3 attempts" in gens[1].error
    assert sum("doomed" in r.text for r in fault_server.posts()) == 3


def test_other_client_errors_are_not_retried(fault_server):
    fault_server.push(Fault.http(404, "The model `gpt-4o-mini` does not exist"))
    [gen] = endpoint(fault_server).generate(["hello"])
    assert "404" in gen.error and "does not exist" in gen.error and "not retried" in gen.error
    assert len(fault_server.posts()) == 1


def test_a_timeout_is_retried_and_named_when_it_persists(fault_server):
    fault_server.push(Fault.slow(1.5))
    [gen] = endpoint(fault_server, timeout_s=0.3).generate(["hello"])
    assert gen.ok and len(fault_server.posts()) == 2
    fault_server.push(Fault.slow(1.5, times=2))
    [gen] = endpoint(fault_server, timeout_s=0.3, max_retries=1).generate(["hello"])
    assert "no reply within 0.3 s" in gen.error and "after 2 attempts" in gen.error


def test_a_closed_connection_is_retried(fault_server):
    fault_server.push(Fault.close())
    [gen] = endpoint(fault_server).generate(["hello"])
    assert gen.ok and len(fault_server.posts()) == 2
    fault_server.push(Fault.close())
    [gen] = endpoint(fault_server, max_retries=0).generate(["hello"])
    assert "connection failed" in gen.error


def test_garbage_and_foreign_json_are_errors_that_say_so(fault_server):
    fault_server.push(
        Fault.garbage(when=lambda r: r.text == "a"), Fault.not_openai(when=lambda r: r.text == "b")
    )
    garbage, foreign, fine = endpoint(fault_server).generate(["a", "b", "c"])
    assert "not JSON" in garbage.error and "upstream hiccup" in garbage.error
    assert "not an OpenAI reply" in foreign.error and fine.ok


# ------------------------------------------------------------------------------ what is sent
def test_options_map_onto_the_request(fault_server):
    e = endpoint(fault_server)
    e.generate(["hi"], max_new_tokens=9, temperature=0.7, top_p=0.9, seed=3, stop=["\n"])
    [sent] = fault_server.posts()
    body = sent.body
    assert sent.path == "/v1/chat/completions" and body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        9,
        0.7,
        0.9,
        3,
    )
    assert body["stop"] == ["\n"] and body["logprobs"] is True


def test_an_adapter_selects_the_model_id_base_colon_adapter(fault_server):
    endpoint(fault_server).generate(["hi"], adapter="receipts")
    assert fault_server.posts()[0].body["model"] == "gpt-4o-mini:receipts"


def test_chat_false_is_a_plain_completion(fault_server):
    fault_server.reply = lambda r: Reply(" world", logprobs=[-0.2, -0.4])
    [gen] = endpoint(fault_server).generate(["hello"], chat=False, max_new_tokens=4)
    [sent] = fault_server.posts()
    assert sent.path == "/v1/completions" and sent.body["prompt"] == "hello"
    assert sent.body["logprobs"] == 0 and "messages" not in sent.body
    assert gen.text == " world" and gen.confidence == pytest.approx(math.exp(-0.3))
    [bad] = endpoint(fault_server).generate([[{"role": "user", "content": "x"}]], chat=False)
    assert "plain-text" in bad.error


def test_a_prefill_is_sent_and_not_repeated(fault_server):
    fault_server.reply = lambda r: Reply("def f():\n    return 1")  # repeats the prefill
    chat = [{"role": "user", "content": "write f"}, {"role": "assistant", "content": "def f():"}]
    [gen] = endpoint(fault_server).generate([chat])
    assert fault_server.posts()[0].body["messages"][-1] == chat[-1]
    assert gen.text == "\n    return 1"


def test_every_stop_string_applies_though_four_are_sent(fault_server):
    fault_server.reply = lambda r: Reply("x = 1\nprint(x)\n")
    stops = ["\ndef ", "\nclass ", "\nif __name__", "\n#", "\nprint("]
    [gen] = endpoint(fault_server).generate(["x"], stop=stops)
    assert fault_server.posts()[0].body["stop"] == stops[:4]
    assert gen.text == "x = 1" and gen.finish_reason == "stop"


# ------------------------------------------------------------------------------ structured output
def test_a_json_schema_is_sent_as_response_format_and_the_reply_checked(fault_server):
    fault_server.reply = lambda r: {"city": "Paris"} if "good" in r.text else {"city": 5}
    good, bad = endpoint(fault_server).generate(["good", "bad"], json_schema=CITY)
    response_format = fault_server.posts()[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == CITY
    assert (
        response_format["json_schema"]["strict"] is True and response_format["json_schema"]["name"]
    )
    assert good.ok and good.parsed == {"city": "Paris"}
    assert bad.parsed is None and "city" in bad.error and "not of type 'string'" in bad.error


def test_a_reply_that_is_not_json_under_a_schema_is_an_error(fault_server):
    fault_server.reply = lambda r: Reply('{"city": "Par')
    [gen] = endpoint(fault_server).generate(["x"], json_schema=CITY)
    assert "not valid JSON" in gen.error and gen.parsed is None
    fault_server.reply = lambda r: Reply('{"city": "Pa', finish_reason="length")
    [gen] = endpoint(fault_server).generate(["x"], json_schema=CITY, max_new_tokens=3)
    assert "not complete" in gen.error and gen.finish_reason == "length"


def test_a_pydantic_schema_parses_into_the_class(fault_server):
    class City(BaseModel):
        city: str = Field(max_length=20)

    fault_server.reply = lambda r: {"city": "Lyon"}
    [gen] = endpoint(fault_server).generate(["x"], json_schema=City)
    assert isinstance(gen.parsed, City) and gen.parsed.city == "Lyon"
    assert fault_server.posts()[0].body["response_format"]["json_schema"]["name"] == "City"


def test_an_invalid_schema_fails_each_prompt_before_any_request(fault_server):
    gens = endpoint(fault_server).generate(["x", "y"], json_schema={"type": "nonsense"})
    assert all("invalid JSON schema" in g.error for g in gens) and fault_server.posts() == []


# ------------------------------------------------------------------------------ confidence, usage
def test_logprobs_give_the_causal_lm_confidence(fault_server):
    fault_server.reply = lambda r: Reply(
        "Paris is", logprobs=[-0.1, -0.5, -math.inf], prompt_tokens=11, completion_tokens=3
    )
    [gen] = endpoint(fault_server).generate(["capital?"])
    assert gen.token_logprobs[:2] == [-0.1, -0.5] and gen.token_logprobs[2] == -math.inf
    assert gen.confidence == pytest.approx(math.exp((-0.1 - 0.5) / 2))  # the finite ones
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens) == (11, 3)
    assert gen.finish_reason == "stop" and gen.latency_s > 0


def test_without_logprobs_there_is_no_confidence(fault_server):
    fault_server.reply = lambda r: Reply("Paris", finish_reason="length", usage=False)
    [gen] = endpoint(fault_server).generate(["capital?"])
    assert gen.ok and gen.confidence is None and gen.token_logprobs == []
    assert gen.finish_reason == "length" and gen.usage.total_tokens == 0


def test_a_server_that_rejects_logprobs_is_asked_without_them_from_then_on():
    with FaultServer(reject_logprobs=True) as server:
        e = endpoint(server)
        [first] = e.generate(["one"])
        [second] = e.generate(["two"])
    assert first.ok and second.ok and first.confidence is None
    asked = [r.body.get("logprobs") for r in server.posts()]
    assert asked == [True, None, None]  # one 400, its retry, and the next call without
    assert e.describe()["logprobs"] is False


# ------------------------------------------------------------------------------ the API key
def test_the_key_is_sent_as_a_bearer_header_and_shown_nowhere(monkeypatch, fault_server, caplog):
    caplog.set_level(logging.DEBUG)  # the openai client's and httpx's debug logs too
    monkeypatch.setenv("TEST_ENDPOINT_KEY", KEY)
    e = endpoint(fault_server, api_key_env="TEST_ENDPOINT_KEY", max_retries=1)
    fault_server.push(Fault.http(401, f"Incorrect API key provided: {KEY}"))
    fault_server.push(Fault.http(503, f"upstream rejected Bearer {KEY}", times=2))
    [refused] = e.generate(["hello"])
    [failed] = e.generate(["hello"])
    assert fault_server.posts()[0].headers["authorization"] == f"Bearer {KEY}"
    assert "401" in refused.error and "503" in failed.error
    for shown in (refused.error, failed.error, repr(e), json.dumps(e.describe())):
        assert KEY not in shown
    assert e.describe()["api_key_env"] == "TEST_ENDPOINT_KEY"
    assert "retry 1" in caplog.text and KEY not in caplog.text


def test_without_api_key_env_a_placeholder_is_sent(monkeypatch, fault_server):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # never picked up unasked
    endpoint(fault_server).generate(["hello"])
    assert KEY not in fault_server.posts()[0].headers["authorization"]


def test_a_missing_key_variable_is_an_error_naming_it(monkeypatch, fault_server):
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VARIABLE"):
        endpoint(fault_server, api_key_env="NO_SUCH_KEY_VARIABLE")


def test_a_traced_call_records_a_span_without_the_key(
    monkeypatch, fault_server, mlflow_store, tmp_path
):
    import mlflow

    monkeypatch.setenv("TEST_ENDPOINT_KEY", KEY)
    e = endpoint(fault_server, api_key_env="TEST_ENDPOINT_KEY")
    fault_server.push(Fault.http(400, f"bad request for key {KEY}", when=lambda r: r.text == "b"))
    with tracking.run("endpoint") as run_id:
        gens = e.generate(["a", "b"])
    assert gens[0].ok and KEY not in gens[1].error
    traces = mlflow.search_traces(run_id=run_id, return_type="list")
    assert [t.data.spans[0].name for t in traces] == ["gpt-4o-mini.generate"]
    assert traces[0].data.spans[0].outputs[0]["confidence"] is None
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in stored)
    assert not [p for p in stored if KEY.encode() in p.read_bytes()]


# ------------------------------------------------------------------------------ event loops
def test_it_works_from_inside_a_running_event_loop(fault_server):
    e = endpoint(fault_server, max_concurrency=2)

    async def cell():  # what a Jupyter cell or an async server does
        assert asyncio.get_running_loop().is_running()
        return e.generate(["one", "two", "three"])

    assert [g.text for g in asyncio.run(cell())] == ["one", "two", "three"]


# ------------------------------------------------------------------------------ agents, patterns
def test_an_llm_agent_on_the_endpoint_passes_no_confidence_through(fault_server):
    fault_server.reply = lambda r: Reply("It is Paris.", prompt_tokens=1000, completion_tokens=10)
    prices = PriceTable({"gpt-4o-mini": {"input_per_million": 1.0, "output_per_million": 2.0}})
    agent = LLMAgent("writer", endpoint(fault_server), prompt="Q: {text}", prices=prices)
    [result] = agent.run_batch(["capital of France?"])
    assert result.ok and result.output == "It is Paris." and result.confidence is None
    assert result.path[0].model == "gpt-4o-mini" and result.path[0].confidence is None
    assert result.cost == pytest.approx((1000 * 1.0 + 10 * 2.0) / 1e6)
    assert fault_server.posts()[0].body["messages"][-1]["content"] == "Q: capital of France?"


def test_a_cascade_accepts_a_small_answer_with_no_confidence(fault_server):
    calls = []
    large = FunctionAgent("large", lambda t: (calls.append(t) or "large", 1.0))
    cascade = Cascade(LLMAgent("small", endpoint(fault_server)), large, threshold=0.9)
    [result] = cascade.run_batch(["hello"])
    assert result.output == "hello" and result.confidence is None and calls == []
    assert result.path[-1].decision == "accept: no confidence available"
    point = cascade.calibrate(["a", "b"], ["a", "b"], target_accuracy=1.0)
    assert point["escalated"] == 0.0  # calibrated as run_batch treats None: never escalated
    calls.clear()
    assert cascade.run_batch(["c"])[0].output == "c" and calls == []


def test_a_cascade_escalates_to_the_endpoint_and_its_answer_is_final(fault_server):
    small = FunctionAgent("small", lambda t: ("unsure", 0.1))
    cascade = Cascade(small, LLMAgent("llm-tier", endpoint(fault_server)), threshold=0.5)
    [result] = cascade.run_batch(["hello"])
    assert result.ok and result.output == "hello" and result.confidence is None
    assert result.agents == ["small", "cascade", "llm-tier"]
    assert result.path[1].decision == "escalate: 0.10 < 0.50"


def test_parallel_verify_counts_an_unknown_verifier_confidence_only_against_zero():
    draft = FunctionAgent("draft", lambda t: ("a", 0.9))
    verifier = FunctionAgent("verifier", lambda t: ("b", None))
    assert ParallelVerify(draft, verifier).run("x").meta["verdict"] == "correct"
    strict = ParallelVerify(draft, verifier, min_verifier_confidence=0.5)
    assert strict.run("x").meta["verdict"] == "reject"


class Receipt(BaseModel):
    company: str = Field(max_length=16)
    total: str = Field(max_length=10)


def test_an_extractor_on_the_endpoint_has_no_field_confidence_without_logprobs(fault_server):
    fault_server.reply = lambda r: {"company": "ACME", "total": "9.50"}
    extractor = Extractor(Receipt, endpoint(fault_server))
    [result] = extractor.run_batch(["ACME  total 9.50"])
    assert result.ok and result.output == Receipt(company="ACME", total="9.50")
    assert result.confidence is None and result.meta["field_confidence"] == {
        "company": None,
        "total": None,
    }
    sent = fault_server.posts()[0].body["response_format"]["json_schema"]["schema"]
    assert set(sent["properties"]) == {"company", "total"}
    fault_server.reply = lambda r: Reply('{"company": "ACME", "total": "9.50"}', logprobs=[-0.2])
    [result] = extractor.run_batch(["ACME  total 9.50"])
    assert result.confidence == pytest.approx(math.exp(-0.2))


def test_a_planner_on_the_endpoint_plans_with_a_schema_and_composes(fault_server):
    def reply(request):
        if "response_format" in request.body:
            return {"steps": [{"agent": "echo", "input": "the receipt part"}]}
        return Reply("Done: filed.")

    fault_server.reply = reply
    echo_agent = FunctionAgent("echo", lambda t: (t.text.upper(), 0.8))
    planner = Planner(endpoint(fault_server), {"echo": echo_agent})
    [result] = planner.run_batch(["file my receipt please"])
    assert result.ok and result.output["answer"] == "Done: filed."
    assert result.output["steps"][0]["output"] == "THE RECEIPT PART"
    assert result.confidence == 0.8  # the one known confidence: the plan and answer have none
    plan_schema = fault_server.posts()[0].body["response_format"]["json_schema"]["schema"]
    assert plan_schema["properties"]["steps"]["items"]["properties"]["agent"]["enum"] == ["echo"]


def test_the_fault_server_lists_models(fault_server):
    with urllib.request.urlopen(f"{fault_server.base_url}/models", timeout=5) as reply:
        listed = json.load(reply)
    assert [m["id"] for m in listed["data"]] == ["gpt-4o-mini"]


def test_a_route_decides_on_a_router_answer_with_no_confidence():
    router = FunctionAgent("router", lambda t: ("cards", None))
    route = Route(router, {"cards": FunctionAgent("desk", lambda t: ("done", 1.0))})
    result = route.run("my card")
    assert result.output == "done" and result.path[1].decision == "route -> cards ('cards', n/a)"


@pytest.mark.parametrize("style", ["chat", "completion"])
def test_a_coder_on_the_endpoint_repairs_and_passes(fault_server, style):
    with open(data_dir() / "humaneval" / "problems.jsonl", encoding="utf-8") as f:
        problems = {p["entry_point"]: p for p in map(json.loads, f)}
    replies = ["    return len(string) + 1\n", "    return len(string)\n"]
    fault_server.reply = lambda r: Reply(replies.pop(0))
    coder = Coder(model=endpoint(fault_server), max_repairs=1, style=style)
    [result] = coder.run_batch([humaneval_task(problems["strlen"])])
    assert result.output["passed"] and result.output["attempts"] == 2
    assert result.path[0].model == "gpt-4o-mini" and result.path[0].confidence is None
    first, repair = fault_server.posts()
    path = "/v1/chat/completions" if style == "chat" else "/v1/completions"
    assert first.path == repair.path == path
    assert repair.body["temperature"] == 0.7 and repair.body["seed"] == 1


# ------------------------------------------------------------------------------ review findings
def test_strict_mode_only_for_schemas_in_openais_subset(fault_server):
    open_schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fault_server.reply = lambda r: {"city": "Paris"}
    for schema, strict in ((CITY, True), (open_schema, False)):
        [gen] = endpoint(fault_server).generate(["x"], json_schema=schema)
        assert gen.ok, gen.error
        sent = fault_server.posts()[-1].body["response_format"]["json_schema"]
        assert sent["strict"] is strict


def test_a_reply_with_parts_of_the_wrong_type_fails_only_its_prompt(fault_server):
    bad = {"choices": [{"message": {"content": "hi"}, "logprobs": "oops",
                        "finish_reason": "stop"}]}  # fmt: skip
    fault_server.push(Fault.not_openai(bad, when=lambda r: "bad" in r.text))
    good_gen, bad_gen = endpoint(fault_server).generate(["good", "bad"])
    assert good_gen.ok
    assert not bad_gen.ok and "unexpected shape" in bad_gen.error


def test_a_400_that_only_mentions_logprobs_keeps_them_on(fault_server):
    fault_server.push(Fault.http(400, "prompt too long: ... logprobs=true ..."))
    e = endpoint(fault_server)
    [gen] = e.generate(["x"])
    assert not gen.ok and "HTTP 400" in gen.error
    assert e.describe()["logprobs"] is True

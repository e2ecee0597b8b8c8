"""The other direction: our own agents calling the server through ``OpenAIEndpoint``."""

from __future__ import annotations

import pytest
from server_process import API_KEY, MODEL

from slm_agents.agent import FunctionAgent, LLMAgent
from slm_agents.models import OpenAIEndpoint
from slm_agents.patterns import Cascade

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint(server, monkeypatch):
    monkeypatch.setenv("SERVE_TEST_KEY", API_KEY)
    return OpenAIEndpoint(server.base_url, MODEL, api_key_env="SERVE_TEST_KEY")


def test_a_cascade_escalates_to_the_served_model(endpoint):
    unsure = FunctionAgent("rules", lambda task: ("no idea", 0.1))
    writer = LLMAgent("llm-tier", endpoint, prompt="Reply in one sentence: {text}",
                      max_new_tokens=16)  # fmt: skip
    cascade = Cascade(unsure, writer, threshold=0.5)
    results = cascade.run_batch(["My card was stolen", "How do I close my account?"])
    for result in results:
        assert result.ok, result.error
        assert result.agents == ["rules", "cascade", "llm-tier"]
        assert result.output and result.output != "no idea"
        step = result.path[-1]
        assert step.model == MODEL and step.prompt_tokens > 0 and step.completion_tokens > 0
        assert step.cost > 0


def test_logprobs_from_the_server_give_a_confidence(endpoint):
    [gen] = endpoint.generate(["Say hello"], max_new_tokens=8)
    assert gen.ok and gen.text
    assert gen.confidence is not None and 0 < gen.confidence <= 1
    assert len(gen.token_logprobs) == gen.usage.completion_tokens


def test_adapters_and_schemas_through_the_endpoint(endpoint):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    [base, alpha] = [
        endpoint.generate(["Describe the sea"], max_new_tokens=10, adapter=adapter)[0]
        for adapter in (None, "alpha")
    ]
    assert base.ok and alpha.ok and base.text != alpha.text
    [structured] = endpoint.generate(["Is water wet? Answer as JSON."], json_schema=schema,
                                     max_new_tokens=20)  # fmt: skip
    assert structured.ok, structured.error
    assert isinstance(structured.parsed["ok"], bool)

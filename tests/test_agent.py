"""Agents on the real models: one Result per task, with path, tokens, cost and errors."""

from __future__ import annotations

import asyncio

import pytest

from slm_agents.agent import ClassifierAgent, FunctionAgent, LLMAgent
from slm_agents.pricing import DEFAULT_PRICES, Price, PriceTable
from slm_agents.result import Task


def test_llm_agent_fills_its_prompt_and_prices_the_call(slm):
    agent = LLMAgent(
        "greeter",
        slm,
        prompt="Greet {name} in one short sentence. Context: {text}",
        max_new_tokens=12,
    )
    [result, empty] = agent.run_batch([Task("a new customer", meta={"name": "Ada"}), Task("  ")])
    assert result.ok and result.output
    [step] = result.path
    assert step.agent == "greeter" and step.model == "smollm2-135m-instruct"
    assert step.prompt_tokens > 10 and 0 < step.completion_tokens <= 12
    price = DEFAULT_PRICES["smollm2-135m-instruct"]
    expected = (
        step.prompt_tokens * price.input_per_million
        + step.completion_tokens * price.output_per_million
    ) / 1e6
    assert result.cost == pytest.approx(expected) and result.cost > 0
    assert result.meta == {"name": "Ada"}
    assert empty.error == "task text is empty" and empty.path[0].agent == "greeter"


def test_a_task_that_cannot_fill_the_prompt_fails_alone(slm):
    """A meta key the prompt needs, or a stray brace in it, fails that request, not the batch."""
    agent = LLMAgent("greeter", slm, prompt="Greet {name}. Context: {text}", max_new_tokens=8)
    tasks = [Task("new", meta={"name": "Ada"}), Task("old", id="t2"), Task("x", meta={"name": 1})]
    ada, missing, other = agent.run_batch(tasks)
    assert ada.ok and ada.output and other.ok and other.output
    assert not missing.ok and missing.output is None
    assert "{name}" in missing.error and "'t2'" in missing.error
    assert missing.path[0].agent == "greeter" and missing.path[0].error == missing.error

    braces = LLMAgent("json", slm, prompt='Answer as {"answer": ...}: {text}', max_new_tokens=8)
    [bad] = braces.run_batch([Task("hi")])
    assert not bad.ok and "literal brace" in bad.error
    unbalanced = LLMAgent("json", slm, prompt="Answer {text} }", max_new_tokens=8)
    [bad] = unbalanced.run_batch(["hi"])
    assert not bad.ok and "not a valid str.format template" in bad.error


def test_llm_agent_prompt_must_take_the_text(slm):
    with pytest.raises(ValueError, match="must contain {text}"):
        LLMAgent("x", slm, prompt="no placeholder")


def test_classifier_agent_returns_label_confidence_and_probabilities(router):
    agent = ClassifierAgent("router", router)
    [r] = agent.run_batch(["my card is lost"])
    assert r.output == "cards" and r.confidence == max(r.meta["probabilities"].values())
    assert r.path[0].cost > 0


def test_margin_confidence_is_the_lead_over_the_runner_up(router):
    texts = ["my card is lost", "I want to know something"]
    plain = ClassifierAgent("router", router).run_batch(texts)
    margin = ClassifierAgent("router", router, confidence="margin").run_batch(texts)
    for p, m in zip(plain, margin, strict=True):
        first, second = sorted(p.meta["probabilities"].values(), reverse=True)[:2]
        assert m.output == p.output and m.confidence == pytest.approx(first - second)
        assert m.path[0].confidence == m.confidence < p.confidence
    with pytest.raises(ValueError, match="confidence must be one of"):
        ClassifierAgent("router", router, confidence="entropy")


def test_function_agent_turns_exceptions_into_error_results():
    def rule(task: Task):
        if "boom" in task.text:
            raise KeyError("no rule for boom")
        return task.text.upper(), 1.0

    ok, bad, wrong_type = FunctionAgent("rules", rule).run_batch(["hi", "boom", 7])
    assert ok.output == "HI" and ok.confidence == 1.0
    assert bad.error == "KeyError: 'no rule for boom'"
    assert "task must be str or Task, got int" in wrong_type.error


def test_submit_and_async_run_give_the_same_results():
    agent = FunctionAgent("echo", lambda t: (t.text, 0.5))
    assert agent.submit(["a", "b"]).result()[1].output == "b"
    assert asyncio.run(agent.arun("c")).output == "c"


def test_price_table_overrides_and_unknown_models():
    table = PriceTable({"my-slm": {"input_per_million": 1.0, "output_per_million": 2.0}})
    assert table.cost("my-slm", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.price("never-heard-of") == table.price("llm")  # unknown is never free
    with pytest.raises(ValueError, match="prices must be >= 0"):
        Price(-1.0, 0.0)

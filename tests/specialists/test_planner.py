"""Planner: real SmolLM2 plans under the schema; given plans run, bad ones become error Results."""

from __future__ import annotations

import pytest

from slm_agents.agent import Agent, FunctionAgent
from slm_agents.result import Task
from slm_agents.specialists import Planner
from slm_agents.specialists.planner import PlanError, check_plan, plan_schema

REQUEST = (
    "Hello, I was charged twice for my card payment yesterday. Also please file this receipt: "
    "SHOP ABC, TOTAL 12.50. And my python function add(a, b) returns the wrong value."
)


class Counting(Agent):
    """Echoes its input; counts its batched calls."""

    def __init__(self, name: str, fail_on: str | None = None):
        self.name, self.calls, self.fail_on = name, [], fail_on

    def run_batch(self, tasks):
        self.calls.append(len(tasks))

        def answer(task: Task):
            if self.fail_on and self.fail_on in task.text:
                raise RuntimeError("cannot handle this")
            return (f"{self.name} handled: {task.text}", 0.8)

        return FunctionAgent(self.name, answer).run_batch(tasks)


@pytest.fixture
def specialists():
    return {name: Counting(name) for name in ("support", "receipts", "coder")}


def test_the_llm_plans_only_known_specialists_and_composes_an_answer(slm, specialists):
    planner = Planner(slm, specialists, max_new_tokens=160, answer_tokens=24)
    [result] = planner.run_batch([REQUEST])
    assert result.ok, result.error
    plan = result.output["plan"]
    assert 1 <= len(plan) <= 4 and all(step["agent"] in specialists for step in plan)
    assert [s["agent"] for s in result.output["steps"]] == [s["agent"] for s in plan]
    assert isinstance(result.output["answer"], str) and result.output["answer"]
    names = result.agents
    assert names[0] == "planner" and names[-1] == "planner.compose"
    assert {s["agent"] for s in plan} <= set(names)
    assert result.cost > 0 and result.tokens > 0


def test_given_plans_run_each_specialist_once_per_batch(slm, specialists):
    planner = Planner(slm, specialists, compose=False)
    plans = [
        {"steps": [{"agent": "support", "input": "charged twice"},
                   {"agent": "receipts", "input": "TOTAL 12.50"}]},
        [{"agent": "support", "input": "card lost"}, {"agent": "coder", "input": "def f(): ..."}],
    ]  # fmt: skip
    a, b = planner.run_plans(["first", "second"], plans)
    assert a.ok and b.ok and a.output["answer"] is None
    assert specialists["support"].calls == [2]  # both requests' support steps in one call
    assert a.output["steps"][1]["output"] == "receipts handled: TOTAL 12.50"
    assert b.output["steps"][1]["agent"] == "coder"


def test_a_plan_naming_an_unknown_specialist_is_an_error_result(slm, specialists):
    planner = Planner(slm, specialists, compose=False)
    bad = [{"agent": "billing", "input": "refund"}]
    good = [{"agent": "support", "input": "refund"}]
    broken, fine, empty = planner.run_plans(["a", "b", "  "], [bad, good, good])
    assert "unknown specialist 'billing'; known: coder, receipts, support" in broken.error
    assert fine.ok and empty.error == "task text is empty"


def test_a_failing_step_is_kept_and_only_all_failing_fails_the_request(slm):
    specialists = {"support": Counting("support", fail_on="boom"), "coder": Counting("coder")}
    planner = Planner(slm, specialists, compose=False)
    mixed = [{"agent": "support", "input": "boom"}, {"agent": "coder", "input": "ok"}]
    only_bad = [{"agent": "support", "input": "boom"}]
    partly, wholly = planner.run_plans(["x", "y"], [mixed, only_bad])
    assert partly.ok and "cannot handle this" in partly.output["steps"][0]["error"]
    assert partly.output["steps"][1]["error"] is None
    assert wholly.error == "every specialist step failed"


def test_plan_schema_and_checks():
    schema = plan_schema(["a", "b"], max_steps=2)
    items = schema["properties"]["steps"]
    assert items["maxItems"] == 2 and items["items"]["properties"]["agent"] == {"enum": ["a", "b"]}
    assert check_plan({"steps": [{"agent": "a"}]}, ["a"]) == [{"agent": "a", "input": ""}]
    for bad in ([], {"steps": "a"}, [{"input": "x"}], [{"agent": "a", "input": 3}]):
        with pytest.raises(PlanError):
            check_plan(bad, ["a"])
    with pytest.raises(ValueError, match="at least one specialist"):
        Planner(None, {})

"""A Team finds agents by name; an unknown name is an error Result, not a crash."""

from __future__ import annotations

import pytest

from slm_agents.agent import FunctionAgent
from slm_agents.team import Team, UnknownAgentError


def echo(name: str) -> FunctionAgent:
    return FunctionAgent(name, lambda task: (f"{name}:{task.text}", 1.0))


def test_unknown_agent_names_fail_alone_and_name_the_team():
    team = Team([echo("router"), echo("writer")])
    assert [r.output for r in team.run_batch("writer", ["hi"])] == ["writer:hi"]
    results = team.run_batch("planner", ["a", "", "b"])
    assert [r.ok for r in results] == [False, False, False]
    assert results[0].error == "no agent named 'planner'; the team has ['router', 'writer']"
    assert results[1].error == "task text is empty"
    with pytest.raises(UnknownAgentError, match="the team has"):
        team["planner"]


def test_names_must_be_unique():
    with pytest.raises(ValueError, match="repeated: \\['router'\\]"):
        Team([echo("router"), echo("router")])

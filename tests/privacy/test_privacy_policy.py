"""The team spec's ``privacy:`` block: who is external, on_prem refusals, the kinds, and what
the built agents do with it (the guard sits in front of external endpoints only)."""

from __future__ import annotations

import textwrap

import pytest

from slm_agents.privacy import RedactingGenerator
from slm_agents.runtime.spec import AgentSpec
from slm_agents.teamspec import TeamSpecError, load_team_spec


def team(tmp_path, base_url: str, privacy: str = "", endpoint_extra: str = ""):
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: guarded
        agents:
          tier:
            kind: llm
            endpoint: {{base_url: "{base_url}", model: gpt-4o-mini{endpoint_extra}}}
        flow: {{agent: tier}}
        {privacy}
        """)
    )
    return path


@pytest.mark.parametrize(
    ("base_url", "privacy", "extra", "external"),
    [
        ("http://127.0.0.1:8000/v1", "", "", False),
        ("http://localhost:8000/v1", "", "", False),
        ("http://[::1]:8000/v1", "", "", False),
        ("https://api.openai.com/v1", "", "", True),
        ("http://10.0.0.5:8000/v1", "", "", True),
        ("http://10.0.0.5:8000/v1", "privacy: {local_hosts: [10.0.0.5]}", "", False),
        ("http://vllm.internal:8000/v1", "privacy: {local_hosts: [VLLM.internal]}", "", False),
        ("http://vllm.internal:8000/v1", "", ", external: false", False),
        ("http://127.0.0.1:8000/v1", "", ", external: true", True),
    ],
)
def test_an_endpoint_agent_is_external_unless_its_host_is_on_the_premises(
    tmp_path, base_url, privacy, extra, external
):
    spec = load_team_spec(team(tmp_path, base_url, privacy, extra))
    assert spec.external_agents() == (["tier"] if external else [])
    _, agent = spec.build()
    assert isinstance(agent.model, RedactingGenerator) is external


def test_on_prem_refuses_a_team_with_an_external_agent_naming_it(tmp_path):
    path = team(tmp_path, "https://api.openai.com/v1", "privacy: {on_prem: true}")
    with pytest.raises(TeamSpecError, match=r"agents\.tier \(endpoint host 'api\.openai\.com'\)"):
        load_team_spec(path)
    local = team(tmp_path, "http://127.0.0.1:8000/v1", "privacy: {on_prem: true}")
    assert load_team_spec(local).external_agents() == []


def test_redact_chooses_the_kinds_and_an_unknown_kind_is_an_error_naming_the_field(tmp_path):
    spec = load_team_spec(team(tmp_path, "https://x.example/v1", "privacy: {redact: [email]}"))
    _, agent = spec.build()
    assert agent.model.redactor.kinds == ("EMAIL",)
    bad = team(tmp_path, "https://x.example/v1", "privacy: {redact: [email, passport]}")
    with pytest.raises(TeamSpecError, match=r"privacy\.redact.*PASSPORT"):
        load_team_spec(bad)
    empty = load_team_spec(team(tmp_path, "https://x.example/v1", "privacy: {redact: []}"))
    _, agent = empty.build()
    assert not isinstance(agent.model, RedactingGenerator)  # nothing to redact: sent as it is


def test_a_misspelt_privacy_field_is_an_error(tmp_path):
    with pytest.raises(TeamSpecError, match=r"privacy\.onprem"):
        load_team_spec(team(tmp_path, "http://127.0.0.1:1/v1", "privacy: {onprem: true}"))


def test_redact_belongs_to_endpoint_agents():
    with pytest.raises(ValueError, match="redact applies to endpoint agents only"):
        AgentSpec("writer", "llm", model="smollm2-135m-instruct", redact=["EMAIL"])

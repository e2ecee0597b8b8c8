"""Team specs with ``endpoint:``: agents on an OpenAI-compatible server, no local model.

The server is tests/openai_fault_server.py (real HTTP on 127.0.0.1); the job, the CLI, MLflow
and Ray are the real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import openai_fault_server
import pytest
from openai_fault_server import Reply
from typer.testing import CliRunner

from slm_agents.agent import LLMAgent
from slm_agents.cli import app
from slm_agents.models import OpenAIEndpoint
from slm_agents.runtime.spec import AgentSpec
from slm_agents.teamspec import TeamSpecError, load_team_spec

fault_server = openai_fault_server.fault_server  # the fixture
KEY = "sk-test-teamspec-0c9e2b7a41d8"
runner = CliRunner()


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def endpoint_spec(base_url: str, extra: str = "", key_env: str = "TEAM_ENDPOINT_KEY") -> str:
    return f"""
    name: llm-desk
    agents:
      llm-tier:
        kind: llm
        endpoint: {{base_url: "{base_url}", model: "gpt-4o-mini", api_key_env: {key_env}}}
        prompt: "Answer briefly: {{text}}"
        max_new_tokens: 12
    flow: {{agent: llm-tier}}
    prices:
      gpt-4o-mini: {{input_per_million: 1.0, output_per_million: 2.0}}
    {extra}
    """


def test_the_endpoint_shape_builds_an_llm_agent_on_the_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TEAM_ENDPOINT_KEY", KEY)
    spec = load_team_spec(spec_file(tmp_path, endpoint_spec("http://127.0.0.1:8000/v1")))
    entry = spec.agents["llm-tier"]
    assert entry.model is None and entry.tier == "llm"
    team, agent = spec.build()
    assert isinstance(agent, LLMAgent) and isinstance(agent.model, OpenAIEndpoint)
    assert agent.model.base_url == "http://127.0.0.1:8000/v1" and agent.model.name == "gpt-4o-mini"
    assert agent.max_new_tokens == 12
    assert KEY not in json.dumps(spec.model_dump(mode="json"))  # what a job logs as params


def test_building_an_endpoint_team_loads_no_local_model(tmp_path):
    path = spec_file(tmp_path, endpoint_spec("http://127.0.0.1:8000/v1", key_env="NOT_NEEDED"))
    code = (
        "import os, sys\n"
        "os.environ['NOT_NEEDED'] = 'x'\n"
        "from slm_agents.teamspec import load_team_spec\n"
        f"team, agent = load_team_spec({str(path)!r}).build()\n"
        "print([m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "agent",
    [
        "{kind: classifier, labels: [a, b]}",
        "{kind: review}",
        "{kind: support-router, departments_file: d.yaml}",
    ],
)
def test_endpoint_on_a_kind_without_a_text_generator_names_the_field(tmp_path, agent):
    entry = agent[:-1] + ', endpoint: {base_url: "http://127.0.0.1:8000/v1", model: m}}'
    path = spec_file(tmp_path, f"name: x\nagents:\n  desk: {entry}\nflow: {{agent: desk}}\n")
    (tmp_path / "d.yaml").write_text("cards: [card_arrival]\n")
    with pytest.raises(TeamSpecError, match=r"agents\.desk\.endpoint: .*applies to kinds"):
        load_team_spec(path)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("adapters: {a: ./a}", "adapters"),
        ("quantize: int8", "quantize"),
        ("model: smollm2-135m-instruct", "endpoint"),
    ],
)
def test_endpoint_with_local_model_fields_names_the_field(tmp_path, extra, field):
    text = (
        "name: x\nagents:\n  w:\n    kind: llm\n"
        '    endpoint: {base_url: "http://127.0.0.1:8000/v1", model: m}\n'
        f"    {extra}\nflow: {{agent: w}}\n"
    )
    with pytest.raises(TeamSpecError, match=rf"agents\.w\.{field}: "):
        load_team_spec(spec_file(tmp_path, text))


def test_an_endpoint_needs_an_http_base_url_and_a_model(tmp_path):
    text = "name: x\nagents:\n  w: {kind: llm, endpoint: {base_url: localhost}}\nflow: {agent: w}\n"
    with pytest.raises(TeamSpecError) as caught:
        load_team_spec(spec_file(tmp_path, text))
    assert "agents.w.endpoint.base_url" in str(caught.value)
    assert "agents.w.endpoint.model" in str(caught.value)


def test_an_adapter_on_an_endpoint_is_one_the_server_hosts(fault_server, tmp_path):
    text = (
        "name: x\nagents:\n  w:\n    kind: llm\n"
        f'    endpoint: {{base_url: "{fault_server.base_url}", model: base}}\n'
        "    adapter: receipts\nflow: {agent: w}\n"
    )
    _, agent = load_team_spec(spec_file(tmp_path, text)).build()
    assert agent.run("hello").ok
    assert fault_server.posts()[0].body["model"] == "base:receipts"


def test_agent_specs_with_an_endpoint_share_one_client_per_process():
    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4o-mini"}
    one = AgentSpec("a", "llm", endpoint=endpoint).build()
    two = AgentSpec("b", "llm", endpoint=dict(endpoint), prompt="Q: {text}").build()
    assert one.model is two.model and isinstance(one.model, OpenAIEndpoint)
    with pytest.raises(ValueError, match="endpoint applies to kinds"):
        AgentSpec("c", "classifier", endpoint=endpoint)
    with pytest.raises(ValueError, match="quantize"):
        AgentSpec("d", "llm", endpoint=endpoint, quantize="int8")


def test_slm_agents_run_answers_every_row_through_the_endpoint(
    fault_server, tmp_path, monkeypatch, mlflow_store
):
    import mlflow

    monkeypatch.setenv("TEAM_ENDPOINT_KEY", KEY)
    fault_server.reply = lambda r: Reply("Yes.", prompt_tokens=100, completion_tokens=5)
    team = spec_file(tmp_path, endpoint_spec(fault_server.base_url))
    data = tmp_path / "questions.csv"
    data.write_text("id,text\nq1,Is the sky blue?\nq2,Is water wet?\nq3,Is fire hot?\n")
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, ["run", str(team), "--input", str(data), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["q1", "q2", "q3"]
    for row in rows:
        assert row["error"] is None and row["output"] == "Yes." and row["confidence"] is None
        assert row["handled_by"] == "llm" and row["llm_tier"] is True
        assert row["cost_usd"] == pytest.approx((100 * 1.0 + 5 * 2.0) / 1e6)
    assert "0.0% / 100.0% / 0.0%" in result.output  # SLMs alone / LLM tier / review
    posts = fault_server.posts()
    assert len(posts) == 3 and {p.headers["authorization"] for p in posts} == {f"Bearer {KEY}"}
    assert posts[0].body["max_tokens"] == 12
    run_id = (tmp_path / "results.jsonl.mlflow-run").read_text()
    assert len(mlflow.search_traces(run_id=run_id, return_type="list")) == 3
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in written)
    assert not [p for p in written if KEY.encode() in p.read_bytes()]


def test_an_endpoint_agent_hosted_on_ray_builds_its_client_in_the_actor(fault_server, tmp_path):
    import ray

    from slm_agents.job import run_job

    started_here = not ray.is_initialized()
    text = endpoint_spec(fault_server.base_url, "hosting: {ray: true, num_cpus: 0.5}")
    team = spec_file(tmp_path, text.replace("api_key_env: TEAM_ENDPOINT_KEY", "max_retries: 1"))
    data = tmp_path / "questions.csv"
    data.write_text("id,text\nq1,one\nq2,two\n")
    out = tmp_path / "results.jsonl"
    try:
        summary = run_job(team, data, out, track=False, progress=False)
    finally:
        if started_here:
            ray.shutdown()
    assert summary.ok == 2 and summary.llm_share == 1.0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["q1"]["output"] == "Answer briefly: one"  # the echo of the prompt sent
    assert len(fault_server.posts()) == 2


def test_a_planner_and_an_extractor_on_the_endpoint(fault_server, tmp_path):
    def reply(request):
        schema = request.body.get("response_format", {}).get("json_schema", {}).get("schema", {})
        if "steps" in schema.get("properties", {}):
            return {"steps": [{"agent": "receipts", "input": "ACME total 9.50"}]}
        if "company" in schema.get("properties", {}):
            return {"company": "ACME", "total": "9.50"}
        return Reply("Filed your ACME receipt.")

    fault_server.reply = reply
    endpoint = f'{{base_url: "{fault_server.base_url}", model: gpt-4o-mini}}'
    text = f"""
    name: desk
    agents:
      receipts:
        kind: extractor
        endpoint: {endpoint}
        json_schema:
          type: object
          properties: {{company: {{type: string}}, total: {{type: string}}}}
          required: [company, total]
      planner: {{kind: planner, endpoint: {endpoint}, specialists: [receipts]}}
    flow: {{agent: planner}}
    """
    spec = load_team_spec(spec_file(tmp_path, text))
    assert spec.agents["receipts"].tier == spec.agents["planner"].tier == "llm"
    _, planner = spec.build()
    result = planner.run("Please file this: ACME total 9.50")
    assert result.ok and result.output["answer"] == "Filed your ACME receipt."
    assert result.output["steps"][0]["output"] == {"company": "ACME", "total": "9.50"}
    assert result.confidence is None  # nobody on this path gave a confidence
    assert len(fault_server.posts()) == 3  # plan, extract, compose

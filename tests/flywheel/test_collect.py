"""S1 from MLflow: a real ``slm-agents run`` of a desk whose LLM tier is an OpenAI-compatible
endpoint (a recording server on 127.0.0.1, marked external), then ``slm-agents flywheel
collect``: one call per LLM-tier span, with the stored (redacted) request text, the answer, the
model and the token usage the server reported; the local router's spans are not calls."""

from __future__ import annotations

import csv
import json
import textwrap
from collections import Counter

import openai_fault_server
import pytest
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.finetune.flywheel.calls import read_calls
from slm_agents.finetune.flywheel.collect import CollectError, collect_calls

fault_server = openai_fault_server.fault_server  # the fixture: echoes the prompt back
runner = CliRunner()
TICKETS = [
    "Hi, I'm Jane Roe. My card has not arrived, write to jane.roe@example.org please.",
    "My transfer to Mark Lewis is still pending, call me on +44 20 7946 0958.",
    "I want to close my account, my card is 4111 1111 1111 1111.",
]
RAW_VALUES = ["Jane Roe", "jane.roe@example.org", "Mark Lewis", "7946 0958", "4111 1111"]


def desk(tmp_path, base_url: str) -> str:
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: flywheel-desk
        agents:
          router:
            kind: classifier
            model: all-minilm-l6-v2
            labels: [cards, transfers, account]
          llm-tier:
            kind: llm
            endpoint: {{base_url: "{base_url}", model: gpt-4o-mini, external: true}}
            prompt: "Answer this customer: {{text}}"
        flow:
          cascade: {{small: router, large: llm-tier, threshold: 1.0}}
        """)
    )
    return str(path)


def run_desk(tmp_path, team: str) -> list[dict]:
    data = tmp_path / "tickets.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([f"t{i}", text] for i, text in enumerate(TICKETS))
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, ["run", team, "--input", str(data), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def collect(tmp_path, mlflow_store, *extra: str):
    out = tmp_path / "calls.jsonl"
    args = ["flywheel", "collect", "--experiment", mlflow_store.experiment, "--out", str(out),
            "--tracking-uri", mlflow_store.tracking_uri, *extra]  # fmt: skip
    return runner.invoke(app, args), out


def test_collect_exports_the_llm_tier_calls_of_a_run(fault_server, tmp_path, mlflow_store):
    from slm_agents.privacy import store_text

    rows = run_desk(tmp_path, desk(tmp_path, fault_server.base_url))
    posts = fault_server.posts()
    assert len(posts) == len(TICKETS)  # every ticket escalated to the LLM tier
    assert all(row["agents"][-2:] == ["redact", "llm-tier"] for row in rows)

    result, out = collect(tmp_path, mlflow_store)
    assert result.exit_code == 0, result.output
    assert f"{len(TICKETS)} LLM-tier calls from {len(TICKETS)} of {len(TICKETS)} traces" in (
        " ".join(result.output.split())
    )
    calls = read_calls(out).calls
    assert len(calls) == len(TICKETS)  # the router, cascade and redact spans are not calls
    by_task = {c.meta["task_id"]: c for c in calls}
    for row, ticket in zip(sorted(rows, key=lambda r: r["id"]), TICKETS, strict=True):
        call = by_task[row["id"]]
        assert call.id.startswith(f"{row['trace_id']}/") and call.meta["agent"] == "llm-tier"
        assert call.input == store_text(ticket)  # the request text as the store holds it
        assert isinstance(call.output, str) and call.output.startswith("Answer this customer:")
        assert call.model == "gpt-4o-mini" and call.ok and call.timestamp
        assert call.cost == pytest.approx(row["cost_by_agent"]["llm-tier"])
        for value in RAW_VALUES:
            assert value not in call.input and value not in call.output
    assert "<EMAIL_1>" in by_task["t0"].input and "<PERSON_1>" in by_task["t0"].output
    reported = Counter((len(p.text.split()), len(p.text.split())) for p in posts)  # echo server
    assert Counter((c.prompt_tokens, c.completion_tokens) for c in calls) == reported

    later, _ = collect(tmp_path, mlflow_store, "--since", "2999-01-01")
    assert later.exit_code == 2
    assert "no LLM-tier calls in the 0 traces" in " ".join(later.output.split())
    assert len(collect_calls(mlflow_store.experiment, since="2000-01-01",
                             tracking_uri=mlflow_store.tracking_uri).calls) == 3  # fmt: skip


def test_a_team_without_an_llm_tier_says_how_to_get_calls(tmp_path, mlflow_store):
    team = tmp_path / "router.yaml"
    team.write_text(
        "name: only-slm\nagents:\n  router: {kind: classifier, model: all-minilm-l6-v2, "
        "labels: [cards, transfers]}\nflow: {agent: router}\n"
    )
    run_desk(tmp_path, str(team))
    result, out = collect(tmp_path, mlflow_store)
    assert result.exit_code == 2 and not out.exists()
    message = " ".join(result.output.split())
    assert f"no LLM-tier calls in the {len(TICKETS)} traces" in message
    assert "slm-agents run" in message and "LLM-tier agent" in message


def test_an_unknown_experiment_or_date_is_a_clear_error(tmp_path, mlflow_store):
    with pytest.raises(CollectError, match="no experiment named 'nope'"):
        collect_calls("nope", tracking_uri=mlflow_store.tracking_uri)
    mlflow_store.connect()  # the fixture's experiment exists once the tracker connected
    with pytest.raises(CollectError, match="is not a date"):
        collect_calls(mlflow_store.experiment, since="yesterday",
                      tracking_uri=mlflow_store.tracking_uri)  # fmt: skip

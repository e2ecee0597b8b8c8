"""The main job, `slm-agents run`: real models, real MLflow, a real kill and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.job import completed_ids, run_job

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TICKETS = EXAMPLES / "data" / "support_tickets.csv"
ROUTER_SPEC = """
name: routing
agents:
  router: {kind: classifier, model: all-minilm-l6-v2, labels_file: banking77_departments.yaml}
flow: {agent: router}
input: {text_column: text, id_column: id, label_column: department}
"""
WRITER_SPEC = """
name: writer
agents:
  writer: {kind: llm, model: smollm2-135m-instruct, prompt: "Reply in five words: {text}",
           max_new_tokens: 6}
flow: {agent: writer}
"""
runner = CliRunner()


def spec(tmp_path: Path, text: str) -> Path:
    shutil.copy(EXAMPLES / "banking77_departments.yaml", tmp_path)
    path = tmp_path / "team.yaml"
    path.write_text(text)
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_job_writes_every_request_once_with_a_summary_and_one_mlflow_run(tmp_path, mlflow_store):
    import mlflow

    out = tmp_path / "results.jsonl"
    summary = run_job(spec(tmp_path, ROUTER_SPEC), TICKETS, out, batch_size=16, progress=False)
    rows = records(out)
    assert len(rows) == 40 == summary.requests == summary.ok
    assert {r["id"] for r in rows} == {f"t{i:03d}" for i in range(40)}
    assert summary.labelled == 40 and summary.accuracy == pytest.approx(
        sum(r["correct"] for r in rows) / 40
    )
    assert summary.accuracy > 0.6  # zero-shot MiniLM over 7 departments
    assert summary.slm_share == 1.0 and summary.latency_p50_s <= summary.latency_p95_s
    assert summary.cost_usd > 0 and summary.tokens > 0
    traces = mlflow.search_traces(run_id=summary.run_id, return_type="list")
    assert len(traces) == 40
    run = mlflow.get_run(summary.run_id)
    assert run.data.metrics["accuracy"] == summary.accuracy
    assert run.data.params["team.name"] == "routing"


def test_an_interrupted_job_resumes_into_the_same_run_and_output(tmp_path, mlflow_store):
    out = tmp_path / "results.jsonl"
    team = spec(tmp_path, ROUTER_SPEC)

    def stop(_records):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(team, TICKETS, out, batch_size=8, progress=False, on_batch=stop)
    assert len(records(out)) == 8
    with out.open("a") as f:  # a kill in the middle of writing a line
        f.write('{"id": "t0')
    first_run = (tmp_path / "results.jsonl.mlflow-run").read_text()
    summary = run_job(team, TICKETS, out, batch_size=8, progress=False)
    ids = [r["id"] for r in records(out)]
    assert len(ids) == len(set(ids)) == 40 and summary.processed_now == 32
    assert summary.run_id == first_run


def test_a_killed_cli_job_resumes_and_holds_each_input_once(tmp_path):
    """SIGKILL a real `slm-agents run` between batches, then run it again."""
    out = tmp_path / "replies.jsonl"
    team = spec(tmp_path, WRITER_SPEC)
    cli = str(Path(sys.executable).parent / "slm-agents")
    command = [cli, "run", str(team), "--input", str(TICKETS), "--output", str(out),
               "--batch-size", "4", "--limit", "24", "--no-track"]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1"}
    child = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if out.exists() and len(completed_ids(out)) >= 8:
            break
        time.sleep(0.2)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = len(completed_ids(out))
    assert 8 <= done_before < 24
    result = runner.invoke(app, ["run", str(team), "--input", str(TICKETS), "--output", str(out),
                                 "--batch-size", "8", "--limit", "24", "--no-track"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = [r["id"] for r in records(out)]
    assert len(ids) == len(set(ids)) == 24
    assert f"{24 - done_before} / {done_before}" in result.output


def test_bad_rows_are_reported_per_row_while_the_rest_complete(tmp_path):
    data = tmp_path / "tickets.csv"
    data.write_bytes(
        b"id,text,department\n1,my card is lost,cards\n2,   ,cards\n3,caf\xe9 au lait,cards\n"
        b"4,I want to send money abroad,transfers\n"
    )
    out = tmp_path / "out.jsonl"
    summary = run_job(spec(tmp_path, ROUTER_SPEC), data, out, track=False, progress=False)
    by_id = {r["id"]: r for r in records(out)}
    assert by_id["2"]["error"] == "task text is empty"
    assert "not valid UTF-8" in by_id["3"]["error"]
    assert by_id["1"]["error"] is None and by_id["4"]["error"] is None
    assert summary.ok == 2 and summary.errors == 2


def test_a_bad_spec_or_input_is_one_clear_line(tmp_path):
    bad = spec(tmp_path, ROUTER_SPEC.replace("kind: classifier", "kind: clasifier"))
    result = runner.invoke(app, ["run", str(bad), "--input", str(TICKETS), "--output", "o.jsonl"])
    assert result.exit_code == 2 and "agents.router.kind" in result.output
    assert "'classifier'" in result.output
    good = spec(tmp_path, ROUTER_SPEC)
    result = runner.invoke(app, ["run", str(good), "--input", "nope.txt", "--output", "o.jsonl"])
    assert result.exit_code == 2 and "unknown format '.txt'" in result.output


def test_the_inbox_example_plans_with_the_llm_tier_and_calls_only_its_specialists(tmp_path):
    out = tmp_path / "inbox.jsonl"
    summary = run_job(
        EXAMPLES / "inbox.yaml", EXAMPLES / "data" / "inbox.jsonl", out, limit=2,
        track=False, progress=False,
    )  # fmt: skip
    rows = records(out)
    assert [r["id"] for r in rows] == ["mail-1", "mail-2"]
    for row in rows:
        assert row["error"] is None, row["error"]
        plan = row["output"]["plan"]
        assert 1 <= len(plan) <= 3 and {s["agent"] for s in plan} <= {"desk", "receipts"}
        assert len(row["output"]["steps"]) == len(plan) and row["output"]["answer"]
        assert "planner" in row["agents"]
    assert summary.slm_share == 0.0  # every request went through the planner: the LLM tier


def test_every_example_team_spec_validates():
    from slm_agents.teamspec import load_team_spec

    not_teams = {"banking77_departments.yaml", "serve.yaml"}  # a grouping, a serve config
    specs = sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name not in not_teams)
    assert specs == ["coding_helper.yaml", "inbox.yaml", "receipts.yaml", "support_desk.yaml",
                     "support_desk_llm_tier.yaml"]  # fmt: skip
    for name in specs:
        load_team_spec(EXAMPLES / name)  # raises TeamSpecError naming the field


@pytest.mark.parametrize(
    "team, data, keys",
    [
        ("receipts.yaml", "receipts.jsonl", {"company", "date", "address", "total"}),
        ("coding_helper.yaml", "humaneval_sample.jsonl", {"code", "passed", "attempts", "error"}),
    ],
)
def test_the_example_teams_run_on_their_sample_data(tmp_path, team, data, keys):
    spec_path = EXAMPLES / team
    if team == "coding_helper.yaml":  # the example as written, with shorter attempts (~10 s)
        spec = yaml.safe_load(spec_path.read_text())
        spec["agents"]["coder"] |= {"max_new_tokens": 64, "max_repairs": 1}
        spec_path = tmp_path / team
        spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out.jsonl"
    summary = run_job(
        spec_path, EXAMPLES / "data" / data, out, limit=1, track=False, progress=False
    )
    [row] = records(out)
    assert row["error"] is None and summary.ok == 1, row["error"]
    assert set(row["output"]) == keys


def test_a_pasted_300_kb_log_in_one_csv_cell_fails_only_its_row(tmp_path):
    data = tmp_path / "tickets.csv"
    log = "Traceback (most recent call last): disk full\n" * 7_000  # ~315 KB in one cell
    data.write_text(
        f'id,text,department\n1,my card is lost,cards\n2,"{log}",account\n'
        "3,I want to send money abroad,transfers\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["run", str(spec(tmp_path, ROUTER_SPEC)), "--input", str(data),
                                 "--output", str(out), "--no-track"])  # fmt: skip
    assert result.exit_code == 0, result.output
    by_id = {r["id"]: r for r in records(out)}
    assert len(by_id) == 3
    assert by_id["2"]["error"].endswith("the limit is 131,072")
    assert by_id["1"]["error"] is None and by_id["3"]["error"] is None

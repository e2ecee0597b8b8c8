"""The whole loop on a small stream: ``slm-agents flywheel run``, ``evaluate``, a second round.

The stream: BANKING77 tickets of six card intents (the logged answer is the intent) and SROIE
receipts (the logged answer is the JSON of their four fields), interleaved, with times. Too few
receipts to train on, so that cluster stays with the LLM tier without spending the test's time;
the tickets get an encoder classifier within a small budget. Real encoder, real training, real
MLflow (sqlite in tmp), a real HTTP LLM tier on 127.0.0.1 for the endpoint evaluation.
"""

from __future__ import annotations

import csv
import json
import random

import pytest
import yaml
from openai_fault_server import FaultServer, Reply
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.datasets import data_dir
from slm_agents.finetune.flywheel.calls import Call, read_calls, write_calls

# One topic (a card or its PIN that does not work), far from receipts: tickets about delivery
# dates and exchange rates sit near receipts (dates, amounts) and split off with them.
INTENTS = (
    "activate_my_card",
    "card_linking",
    "card_not_working",
    "lost_or_stolen_card",
    "pin_blocked",
    "passcode_forgotten",
)
runner = CliRunner()


def _tickets(rows: list[dict], start: float) -> list[Call]:
    return [
        Call(id=f"t{i}-{start:.0f}", input=r["text"], output=r["category"], model="gpt-4o-mini",
             prompt_tokens=600, completion_tokens=5, timestamp=start + 60 * i)
        for i, r in enumerate(rows)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def calls():
    """(first stream, a later week of new tickets, held-out calls), in time order each."""
    with (data_dir() / "banking77" / "train.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in INTENTS]
    random.Random(0).shuffle(rows)
    from slm_agents.finetune.recipes import load_receipts
    from slm_agents.specialists.receipts import FIELDS

    receipts = [
        Call(id=f"r{r.id}", input=r.text, output={f: r.fields[f] for f in FIELDS},
             model="gpt-4o-mini", prompt_tokens=700, completion_tokens=40, timestamp=0.0)
        for r in load_receipts(data_dir() / "sroie" / "receipts.jsonl")[:18]
    ]  # fmt: skip
    first = _tickets(rows[:150], 1_000_000.0)
    for i, call in enumerate(receipts):  # spread among the tickets
        call.timestamp = 1_000_000.0 + 60 * (8 * i) + 30
    stream = sorted(first + receipts, key=lambda c: c.timestamp)
    later = _tickets(rows[150:200], 2_000_000.0)
    heldout = _tickets(rows[200:240], 3_000_000.0)
    return stream, later, heldout


@pytest.fixture(scope="module")
def round1(calls, tmp_path_factory):
    """``slm-agents flywheel run`` on the first stream, tracked in a fresh MLflow store."""
    from slm_agents import tracking

    folder = tmp_path_factory.mktemp("flywheel")
    write_calls(folder / "calls_in.jsonl", calls[0])
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = runner.invoke(app, [
        "flywheel", "run", "--calls", str(folder / "calls_in.jsonl"), "--out", str(folder / "out"),
        "--budget-minutes", "2.5", "--tracking-uri", uri,
    ])  # fmt: skip
    yield folder, result, uri
    tracking.disable()
    tracking.configure()


def test_run_writes_a_team_its_clusters_and_a_report(round1):
    folder, result, _ = round1
    assert result.exit_code == 0, result.output
    out = folder / "out"
    for name in ("team.yaml", "router.json", "clusters.json", "report.md", "calls.jsonl"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "agreement.png", "cost.png", "shares.png"]  # fmt: skip
    state = json.loads((out / "clusters.json").read_text())
    clusters = state["clustering"]["clusters"]
    assert len(clusters) >= 2, state["clustering"]["reason"]
    extraction = {c["name"] for c in clusters if c["output_type"]["kind"] == "extraction"}
    tickets = {c["name"] for c in clusters if c["output_type"]["kind"] == "classification"}
    assert len(extraction) == 1 and tickets and len(extraction) + len(tickets) == len(clusters)
    plans = {p["cluster"]: p for p in state["plans"]}
    (receipts,) = extraction
    assert plans[receipts]["specialist"] is None and "not trained" in plans[receipts]["why"]
    chosen = [plans[t]["specialist"] for t in tickets if plans[t]["specialist"]]
    assert chosen, [plans[t]["why"] for t in tickets]
    assert all(s["candidate"] == "encoder-classifier" for s in chosen)
    assert all(s["agreement_at_threshold"] >= 0.95 for s in chosen)
    assert "placeholder" in result.output  # no --llm-tier: the team file has a placeholder

    team = yaml.safe_load((out / "team.yaml").read_text())
    assert team["agents"]["router"]["kind"] == "cluster-router"
    routes = team["flow"]["route"]["routes"]
    thresholds = sorted(r["cascade"]["threshold"] for r in routes.values() if isinstance(r, dict))
    assert thresholds == pytest.approx(sorted(s["threshold"] for s in chosen))
    report = (out / "report.md").read_text()
    assert "plots/shares.png" in report and receipts in report


def test_the_run_is_one_mlflow_run_with_the_training_nested_in_it(round1):
    import mlflow

    folder, _, uri = round1
    client = mlflow.MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    (top,) = [r for r in runs if r.info.run_name == "flywheel"]
    state = json.loads((folder / "out" / "clusters.json").read_text())
    assert top.data.metrics["clusters"] == state["clustering"]["k"]
    assert top.data.metrics["specialists"] == sum(p["specialist"] is not None
                                                  for p in state["plans"])  # fmt: skip
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == top.info.run_id]
    assert children, "the classifier's training run is nested in the flywheel's run"
    artifacts = {a.path for a in client.list_artifacts(top.info.run_id)}
    assert {"team.yaml", "clusters.json", "report.md"} <= artifacts


def test_evaluate_offline_scores_escalations_with_the_logged_answers(round1, calls, tmp_path):
    folder, _, _ = round1
    write_calls(tmp_path / "held.jsonl", calls[2])
    result = runner.invoke(app, [
        "flywheel", "evaluate", str(folder / "out"), "--calls", str(tmp_path / "held.jsonl"),
        "--json", str(tmp_path / "scores.json"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {"n", "slm_share", "agreement", "agreement_slm_handled", "cost_ratio",
            "clusters"} <= scores.keys()  # fmt: skip
    assert scores["n"] == len(calls[2]) and scores["errors"] == 0
    assert scores["llm_tier"]["mode"] == "logged answers"
    assert scores["slm_share"] > 0.5  # most tickets stay with the classifier
    assert scores["cost_ratio"] < 0.6  # an encoder call costs next to nothing
    assert {"name", "share", "slm_share", "agreement"} <= scores["clusters"][0].keys()


def test_evaluate_against_a_live_llm_tier_sends_it_the_escalated_calls(round1, calls, tmp_path):
    folder, _, _ = round1
    answers = {c.input: c.output for c in calls[2]}

    def llm(request):
        return Reply(answers.get(request.body["messages"][-1]["content"], "unknown"))

    with FaultServer(llm) as server:
        tier = {"kind": "llm", "endpoint": {"base_url": server.base_url, "model": "gpt-4o-mini"},
                "prompt": "{text}"}  # fmt: skip
        (tmp_path / "tier.yaml").write_text(yaml.safe_dump(tier))
        write_calls(tmp_path / "held.jsonl", calls[2])
        result = runner.invoke(app, [
            "flywheel", "evaluate", str(folder / "out"), "--calls", str(tmp_path / "held.jsonl"),
            "--json", str(tmp_path / "scores.json"), "--llm-tier", str(tmp_path / "tier.yaml"),
        ])  # fmt: skip
        sent = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["llm_tier"]["mode"] == "endpoint"
    escalated = round(scores["n"] * (1 - scores["slm_share"]))
    assert len(sent) == escalated  # every escalated call, and only those, reached the LLM tier


def test_a_second_round_retrains_only_the_cluster_with_new_calls(round1, calls):
    from slm_agents.finetune.flywheel.runner import run_flywheel

    folder, _, _ = round1
    again = run_flywheel(calls[1], folder / "out", budget_minutes=2.0, say=lambda _: None,
                         progress=False)  # fmt: skip
    kinds = {p.cluster: p.output_type for p in again.plans}
    assert again.trained and {kinds[name] for name in again.trained} == {"classification"}
    assert "extraction" in {kinds[name] for name in again.kept}
    state = json.loads((folder / "out" / "clusters.json").read_text())
    assert state["round"] == 2 and [h["round"] for h in state["history"]] == [1, 2]
    learned = {c.id for c in read_calls(folder / "out" / "calls.jsonl").calls}
    counts = state["counts"]  # the new calls joined the old: every one is kept or counted
    assert len(learned) == counts["train"] + counts["heldout"]
    assert len({c.id for c in calls[1]} - learned) <= counts["dropped_near_duplicate"]


def test_bad_inputs_fail_clearly(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    result = runner.invoke(app, ["flywheel", "run", "--calls", str(tmp_path / "empty.jsonl"),
                                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code != 0 and "empty.jsonl" in result.output
    (tmp_path / "tier.yaml").write_text("kind: llm\nendpoint: {base_url: ftp://x, model: m}\n")
    (tmp_path / "one.jsonl").write_text('{"input": "hi", "output": "x"}\n')
    result = runner.invoke(app, ["flywheel", "run", "--calls", str(tmp_path / "one.jsonl"),
                                 "--out", str(tmp_path / "out"),
                                 "--llm-tier", str(tmp_path / "tier.yaml")])  # fmt: skip
    assert result.exit_code != 0 and "base_url" in result.output
    result = runner.invoke(
        app,
        [
            "flywheel",
            "evaluate",
            str(tmp_path),
            "--calls",
            str(tmp_path / "one.jsonl"),
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code != 0 and "no flywheel run" in " ".join(result.output.split())


def test_a_misrouted_call_is_judged_by_its_own_answer():
    """A ticket the router sends to the receipts cluster is answered by that cluster's LLM
    tier; its answer is still compared as a label, not as an object of fields."""
    from slm_agents.finetune.flywheel.evaluate import _kind

    assert _kind("card_arrival", "extraction") == "classification"
    assert _kind({"address": "", "total": "1"}, "extraction") == "extraction"
    assert _kind("def f():\n    return 1\n", "classification") == "generation"
    assert _kind("Paris", "generation") == "generation"  # short free text stays text
    assert _kind("card_arrival", None) == "classification"

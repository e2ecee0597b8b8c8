"""S6 deploy: a cluster router on real tickets and receipts, and the team write_team writes.

The tickets are BANKING77's, the receipts SROIE's; they are embedded once per module by the
real bundled encoder. The LLM tier is tests/openai_fault_server.py (real HTTP on 127.0.0.1).
"""

from __future__ import annotations

import csv
import json

import numpy
import openai_fault_server
import pytest
import yaml
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.cluster_router import CentroidsError, ClusterRouter, save_centroids
from slm_agents.datasets import data_dir
from slm_agents.finetune.flywheel.cluster import cluster_calls
from slm_agents.finetune.flywheel.deploy import PLACEHOLDER_URL, slugify, write_team
from slm_agents.finetune.flywheel.plan import ClusterPlan, Specialist
from slm_agents.models.embedding import embed_texts
from slm_agents.patterns import Cascade, Route
from slm_agents.teamspec import load_team_spec

fault_server = openai_fault_server.fault_server  # the fixture
PER_TASK = 12  # calls a task: cluster_calls splits at 10 calls a cluster or more
HELD = 3  # of them routed by the router, not used for its centroids
SYSTEM = "Read the receipt and answer with its total."


def _tickets(n: int) -> list[str]:
    with (data_dir() / "banking77" / "test.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["text"] for row in rows[:: len(rows) // n][:n]]


def _receipts(n: int) -> list[str]:
    with (data_dir() / "sroie" / "receipts.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][: n * 5 : 5]
    return ["\n".join(line["text"] for line in r["lines"]) for r in rows]


@pytest.fixture(scope="module")
def calls():
    """(tasks, texts, their embeddings): tickets first, then receipts."""
    texts = _tickets(PER_TASK) + _receipts(PER_TASK)
    tasks = ["ticket"] * PER_TASK + ["receipt"] * PER_TASK
    return tasks, texts, embed_texts(texts)


@pytest.fixture(scope="module")
def centroids_file(calls, tmp_path_factory):
    tasks, _, vectors = calls
    fit = [i for i in range(len(tasks)) if i % PER_TASK >= HELD]
    means = [vectors[[i for i in fit if tasks[i] == t]].mean(axis=0) for t in ("ticket", "receipt")]
    return save_centroids(tmp_path_factory.mktemp("router") / "router.json",
                          ["tickets", "receipts"], means)  # fmt: skip


def test_the_cluster_router_sends_each_request_to_its_cluster(calls, centroids_file):
    tasks, texts, vectors = calls
    held = [i for i in range(len(tasks)) if i % PER_TASK < HELD]
    router = ClusterRouter("router", centroids_file)
    results = router.run_batch([texts[i] for i in held])
    assert [r.output for r in results] == [tasks[i] + "s" for i in held]
    data = json.loads(centroids_file.read_text())
    expected = vectors[held] @ numpy.asarray(data["centroids"]).T  # as the flywheel embedded
    for result, row in zip(results, expected, strict=True):
        assert result.confidence == pytest.approx(min(max(row.max(), 0.0), 1.0), abs=1e-5)
        similarities = dict(zip(data["labels"], row, strict=True))
        assert result.meta["similarities"] == pytest.approx(similarities, abs=1e-5)
        [step] = result.path
        assert step.kind == "classifier" and step.model == "all-minilm-l6-v2" and step.cost > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON centroids file"),
        ('["a"]', "a centroids file is a JSON object"),
        ('{"model": "m", "labels": ["a"], "centroids": [[1]]}', "missing ['window']"),
        ('{"model": "m", "labels": ["a", "b"], "centroids": [[1, 0]], "window": 256}',
         "centroids must be a list of one row per label (2), got 1"),
        ('{"model": "m", "labels": ["a", "b"], "centroids": [[1, 0], [1]], "window": 256}',
         "centroids[1] has 1 values, centroids[0] has 2"),
        ('{"model": "m", "labels": ["a", "a"], "centroids": [[1, 0], [0, 1]], "window": 256}',
         "labels ['a'] appear more than once"),
        ('{"model": "m", "labels": ["a"], "centroids": [[0, 0]], "window": 256}', "all zeros"),
        ('{"model": "m", "labels": ["a"], "centroids": [[1, 0]], "window": 128}',
         "window is 128, but requests are embedded in windows of 256 tokens"),
    ],
)  # fmt: skip
def test_a_bad_centroids_file_is_an_error_naming_the_file_and_the_problem(
    tmp_path, content, message
):
    path = tmp_path / "router.json"
    path.write_text(content)
    with pytest.raises(CentroidsError) as error:
        ClusterRouter("router", path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    with pytest.raises(CentroidsError, match="no such centroids file"):
        ClusterRouter("router", tmp_path / "missing.json")


def test_centroids_of_another_encoder_or_width_are_refused(tmp_path, calls):
    path = save_centroids(tmp_path / "router.json", ["a", "b"], numpy.eye(2, 8))
    with pytest.raises(CentroidsError, match="centroids have 8 values a row, but"):
        ClusterRouter("router", path)
    with pytest.raises(CentroidsError, match="computed with 'all-minilm-l6-v2', but agent"):
        ClusterRouter("router", path, model="bge-small")


@pytest.fixture(scope="module")
def clustering(calls):
    tasks, texts, vectors = calls
    found = cluster_calls(texts, ["answer"] * len(texts), vectors=vectors)
    assert found.k == 2, found.reason
    return found


def _plans(clustering, tasks, threshold):
    """The tickets' cluster gets an (untrained) classifier SLM; the receipts' none."""
    plans = []
    for cluster in clustering.clusters:
        task = tasks[cluster.members[0]]
        specialist = None
        if task == "ticket":
            labels = ["card_arrival", "lost_or_stolen_card", "top_up_failed"]
            agent = {"kind": "classifier", "model": "all-minilm-l6-v2", "labels": labels}
            specialist = Specialist("encoder-classifier", agent, threshold, 0.9, 0.6, 0.97, 1e-7)
        plans.append(ClusterPlan(cluster.name, cluster.id, "classification", cluster.size - 2,
                                 2, specialist, "no candidate kept 30% of calls"))  # fmt: skip
    return plans


def _label_of(clustering, tasks, task):
    [cluster] = [c for c in clustering.clusters if tasks[c.members[0]] == task]
    return slugify(cluster.name), cluster.name


def test_the_written_team_routes_tickets_to_the_slm_and_receipts_to_the_llm_tier(
    tmp_path, calls, clustering, fault_server
):
    tasks, texts, _ = calls
    tier = {"kind": "llm", "prompt": "{text}", "max_new_tokens": 8,
            "endpoint": {"base_url": fault_server.base_url, "model": "gpt-4o-mini",
                         "max_retries": 0}}  # fmt: skip
    tickets, _ = _label_of(clustering, tasks, "ticket")
    receipts, receipts_name = _label_of(clustering, tasks, "receipt")
    path = write_team(tmp_path, clustering, _plans(clustering, tasks, 0.0), llm_tier=tier,
                      systems={receipts_name: SYSTEM})  # fmt: skip
    assert path == tmp_path / "team.yaml" and (tmp_path / "router.json").exists()
    text = path.read_text()
    assert "threshold 0.0000, calibrated on 2 held-out calls: the SLM keeps 60%" in text
    assert PLACEHOLDER_URL not in text

    spec = load_team_spec(path)
    assert spec.agents[f"llm-{receipts}"].system == SYSTEM
    assert {n for n, e in spec.agents.items() if e.tier == "llm"} == {
        f"llm-{tickets}", f"llm-{receipts}"}  # fmt: skip
    team, entry = spec.build()
    assert isinstance(entry, Route) and entry.router.name == "router"
    cascade = entry.routes[tickets]
    assert isinstance(cascade, Cascade) and cascade.name == f"cascade:{tickets}"
    assert (cascade.small.name, cascade.large.name) == (f"slm-{tickets}", f"llm-{tickets}")
    assert entry.routes[receipts].name == f"llm-{receipts}"

    ticket, receipt = texts[0], texts[PER_TASK]
    sent, received = entry.run_batch([ticket, receipt])
    assert [s.agent for s in sent.path] == ["router", "route", f"slm-{tickets}", cascade.name]
    assert sent.path[0].output == tickets and sent.path[0].confidence > 0.3
    assert sent.path[-1].decision.startswith("accept")
    assert [s.agent for s in received.path] == ["router", "route", f"llm-{receipts}"]
    assert received.ok and fault_server.posts()[0].body["messages"][0]["content"] == SYSTEM

    # The same file runs as a job: slm-agents run.
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                for i, t in enumerate([ticket, receipt])))  # fmt: skip
    out = tmp_path / "results.jsonl"
    run = CliRunner().invoke(app, ["run", str(path), "--input", str(requests),
                                   "--output", str(out), "--no-track"])  # fmt: skip
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["agents"] for r in rows] == [["router", f"slm-{tickets}"],
                                          ["router", f"llm-{receipts}"]]  # fmt: skip


def test_below_the_threshold_a_ticket_escalates_and_without_a_tier_a_placeholder_is_written(
    tmp_path, calls, clustering, fault_server
):
    tasks, texts, _ = calls
    tickets, _ = _label_of(clustering, tasks, "ticket")
    path = write_team(tmp_path, clustering, _plans(clustering, tasks, 1.0), llm_tier=None)
    text = path.read_text()
    assert text.startswith("# ") and "REPLACE the LLM tier" in text.split("name:")[0]
    spec = load_team_spec(path)
    assert spec.agents[f"llm-{tickets}"].endpoint.base_url == PLACEHOLDER_URL
    # Point the placeholder at the test's server: the escalated ticket reaches the LLM tier.
    served = yaml.safe_load(text)
    for entry in served["agents"].values():
        if "endpoint" in entry:
            entry["endpoint"] |= {"base_url": fault_server.base_url, "max_retries": 0}
    path.write_text(yaml.safe_dump(served))
    _, entry = load_team_spec(path).build()
    [result] = entry.run_batch([texts[1]])
    assert [s.agent for s in result.path] == [
        "router", "route", f"slm-{tickets}", f"cascade:{tickets}", f"llm-{tickets}"]  # fmt: skip
    assert result.path[3].decision.startswith("escalate") and result.ok


def test_an_extraction_clusters_llm_tier_answers_in_the_slms_schema(tmp_path, calls, clustering):
    tasks, _, _ = calls
    schema = {"type": "object", "properties": {"total": {"type": "string"}}, "required": ["total"]}
    extractor = {"kind": "extractor", "model": "smollm2-135m-instruct", "json_schema": schema}
    plans = [
        ClusterPlan(c.name, c.id, "extraction", c.size, 2,
                    Specialist("smollm2-135m-lora", extractor, 0.8, 0.9, 0.6, 0.97, 1e-6)
                    if tasks[c.members[0]] == "receipt" else None, "stays")
        for c in clustering.clusters
    ]  # fmt: skip
    receipts, _ = _label_of(clustering, tasks, "receipt")
    spec = load_team_spec(write_team(tmp_path, clustering, plans, llm_tier=None))
    assert spec.agents[f"llm-{receipts}"].json_schema == schema
    assert spec.agents[f"slm-{receipts}"].json_schema == schema
    assert spec.flow.route.routes[receipts].threshold == 0.8

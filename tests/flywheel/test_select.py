"""Select and fine-tune on real slices: a BANKING77 ticket cluster trained, scored, registered
in MLflow (sqlite in a temporary folder) and loaded back as a team-spec agent; a cluster too
small to train; SROIE receipts as LoRA SFT data (prompt, schema, token limits), no training.

The logged "LLM answers" are the data sets' labels. Training is kept tiny (rank 4, a few
dozen steps) so the module runs in seconds.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from slm_agents import tracking
from slm_agents.datasets import data_dir
from slm_agents.finetune.flywheel.calls import Call
from slm_agents.finetune.flywheel.candidates import (
    ENCODER_CLASSIFIER,
    SMOLLM2_LORA,
    base_tokenizer,
    build_sft_task,
    registered_name,
)
from slm_agents.finetune.flywheel.cluster import Cluster
from slm_agents.finetune.flywheel.output_types import detect_output_type
from slm_agents.finetune.flywheel.plan import ClusterPlan
from slm_agents.finetune.flywheel.select import select_specialist

INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pending_transfer"]
SMALL_CLASSIFIER = replace(
    ENCODER_CLASSIFIER,
    settings={"rank": 4, "alpha": 8, "max_length": 48},
    train={"epochs": 2, "batch_size": 8, "warmup_steps": 2},
)


def _ticket_calls(per_intent: int, skip: int = 0) -> list[Call]:
    taken: dict[str, int] = {}
    calls = []
    with (data_dir() / "banking77" / "train.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            intent = row["category"]
            if intent not in INTENTS:
                continue
            taken[intent] = taken.get(intent, 0) + 1
            if skip < taken[intent] <= skip + per_intent:
                calls.append(
                    Call(
                        id=f"ticket-{intent}-{taken[intent]}",
                        input=row["text"],
                        output=intent,
                        model="llm",
                        prompt_tokens=len(row["text"].split()),
                        completion_tokens=3,
                    )
                )
    return calls


def _cluster(calls: list[Call], name: str = "card-transfer-rate", id_: int = 0) -> Cluster:
    return Cluster(
        id=id_,
        name=name,
        terms=name.split("-"),
        size=len(calls),
        call_share=1.0,
        cost_share=None,
        output_type=detect_output_type([call.output for call in calls]),
        examples=[calls[0].input],
        members=list(range(len(calls))),
    )


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    """One classification cluster selected once: 4 intents x 15 calls, 4 x 5 held out."""
    root = tmp_path_factory.mktemp("flywheel")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.configure(uri, experiment="tests")
    train, heldout = _ticket_calls(15), _ticket_calls(5, skip=15)
    cluster = _cluster(train)
    out = root / "out"
    plan = select_specialist(
        cluster, train, heldout, out, budget_s=120, candidates=[SMALL_CLASSIFIER], progress=False
    )
    yield plan, cluster, train, heldout, out, uri
    tracking.configure()


def test_a_ticket_cluster_gets_a_calibrated_classifier(tickets):
    plan, cluster, train, heldout, _, _ = tickets
    assert (plan.cluster, plan.cluster_id, plan.output_type) == (cluster.name, 0, "classification")
    assert (plan.calls, plan.heldout_calls) == (60, 20)
    [record] = plan.candidates
    threshold = record["threshold"]
    assert 0.0 <= threshold <= 1.0
    scores = record["scores"]
    assert [s["id"] for s in scores] == [call.id for call in heldout]
    kept = [s for s in scores if s["confidence"] >= threshold]
    assert record["slm_share"] == pytest.approx(len(kept) / len(scores))
    # escalated calls count as agreeing: the LLM's answer is the reference
    at_threshold = sum(s["agreement"] if s in kept else 1.0 for s in scores) / len(scores)
    assert record["agreement_at_threshold"] == pytest.approx(at_threshold)
    assert record["agreement"] == pytest.approx(sum(s["agreement"] for s in scores) / 20)
    assert all(0.0 < s["confidence"] <= 1.0 for s in scores)  # label probabilities

    specialist = plan.specialist
    assert specialist is not None, plan.why
    assert record["qualifies"] and record["slm_share"] >= 0.3
    assert record["agreement_at_threshold"] >= 0.95
    assert specialist.candidate == "encoder-classifier"
    assert specialist.threshold == threshold
    assert specialist.slm_share == record["slm_share"]
    assert specialist.trained_on == [call.id for call in train]
    assert specialist.price_per_call > 0
    assert specialist.train_seconds > 0
    assert "encoder-classifier keeps" in plan.why
    assert ClusterPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_the_agent_entry_loads_as_a_team_spec_agent(tickets):
    from slm_agents.teamspec import load_team_spec

    plan, _, _, heldout, out, _ = tickets
    entry = plan.specialist.agent
    assert entry == {"kind": "classifier", "model": "card-transfer-rate/encoder-classifier"}
    assert not (out / entry["model"] / "checkpoint").exists()  # only the model is deployed
    spec_file = out / "team.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {"name": "check", "agents": {"tickets": entry}, "flow": {"agent": "tickets"}}
        )
    )
    _, agent = load_team_spec(spec_file).build()
    [result] = agent.run_batch([heldout[0].input])
    assert result.ok and result.output in INTENTS
    assert result.confidence == pytest.approx(max(result.meta["probabilities"].values()))


def test_the_model_is_registered_with_its_cluster_and_calls(tickets, tmp_path):
    from mlflow.tracking import MlflowClient

    plan, cluster, train, _, _, uri = tickets
    client = MlflowClient(tracking_uri=uri)
    name = registered_name(cluster.name, "encoder-classifier")
    version = client.get_model_version(name, plan.specialist.model_version)
    assert version.tags["flywheel.cluster"] == cluster.name
    assert version.tags["flywheel.cluster_id"] == "0"
    run = client.get_run(version.run_id)
    assert run.data.tags["flywheel.cluster"] == cluster.name
    path = client.download_artifacts(version.run_id, "trained_on.json", str(tmp_path))
    trained_on = json.loads(Path(path).read_text(encoding="utf-8"))
    assert trained_on["call_ids"] == [call.id for call in train]
    assert trained_on["cluster"] == cluster.name


def test_a_cluster_too_small_gets_no_specialist_and_says_why(tmp_path):
    train, heldout = _ticket_calls(3), _ticket_calls(1, skip=3)
    plan = select_specialist(
        _cluster(train, "tiny"), train, heldout, tmp_path, budget_s=60, track=False, progress=False
    )
    assert plan.specialist is None and plan.candidates == []
    assert "12 training and 4 held-out calls" in plan.why
    assert "at least 20" in plan.why and "5 to be scored on" in plan.why
    assert not any(tmp_path.iterdir())  # nothing trained


def _receipt_calls(n: int) -> list[Call]:
    calls = []
    with (data_dir() / "sroie" / "receipts.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text = "\n".join(x["text"] for x in row["lines"])
            calls.append(Call(id=f"receipt-{row['id']}", input=text, output=row["fields"]))
            if len(calls) == n:
                break
    return calls


def test_receipts_become_sft_examples_with_the_prompt_and_schema_the_agent_uses():
    from slm_agents.agent import LLMAgent
    from slm_agents.result import Task

    calls = _receipt_calls(8)
    calls.append(Call(id="other-shape", input="a note", output={"note": "x"}))
    keys = detect_output_type([call.output for call in calls]).keys
    assert keys == ("address", "company", "date", "total")
    tokenizer = base_tokenizer(SMOLLM2_LORA.base)
    task = build_sft_task("extraction", calls, tokenizer, keys)

    assert task.call_ids == [call.id for call in calls[:8]]
    assert task.dropped == {"not the cluster's fields": 1}
    assert task.prompt.startswith("Extract the address, company, date and total from this")
    schema = task.json_schema
    assert list(schema["properties"]) == list(keys) and schema["required"] == list(keys)
    assert schema["additionalProperties"] is False
    assert all(
        p["type"] == "string" and p["maxLength"] >= 16 for p in schema["properties"].values()
    )
    longest = max(len(call.output["address"]) for call in calls[:8])
    assert schema["properties"]["address"]["maxLength"] == 2 * longest

    agent = LLMAgent("receipts", None, prompt=task.prompt, json_schema=schema)
    for call, example in zip(calls, task.data.examples, strict=False):
        # training sees exactly the message the llm agent sends for the same call
        assert example.prompt == agent._messages(Task(call.input))
        answer = json.loads(example.response)
        assert list(answer) == list(keys)  # schema order, as constrained decoding writes it
        assert answer == {k: call.output[k] for k in keys}
        answer_tokens = len(tokenizer(example.response, add_special_tokens=False)["input_ids"])
        assert answer_tokens < task.max_new_tokens
    assert task.max_length >= max(len(tokenizer(c.input)["input_ids"]) for c in calls[:8])

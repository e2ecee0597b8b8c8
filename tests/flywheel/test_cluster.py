"""Task discovery on real slices: BANKING77 tickets, SROIE receipts, HumanEval prompts.

The logged "LLM answers" are the data sets' labels: a ticket's intent, a receipt's four fields
as JSON, a problem's canonical solution. Inputs are embedded once per module by the real
bundled encoder.
"""

from __future__ import annotations

import csv
import json
import random

import numpy
import pytest
from sklearn.metrics import adjusted_rand_score

from slm_agents.datasets import data_dir
from slm_agents.finetune.flywheel.cluster import cluster_calls
from slm_agents.finetune.flywheel.output_types import detect_output_type

SHUFFLE_SEED = 0


def _intent_tickets(intents: int, per_intent: int) -> list[tuple[str, str]]:
    """``per_intent`` tickets of each of ``intents`` intents spread over BANKING77's 77."""
    with (data_dir() / "banking77" / "test.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    chosen = sorted({row["category"] for row in rows})[::3][:intents]
    taken: dict[str, int] = {}
    calls = []
    for row in rows:
        intent = row["category"]
        if intent in chosen and taken.get(intent, 0) < per_intent:
            taken[intent] = taken.get(intent, 0) + 1
            calls.append((row["text"], intent))
    return calls


def _shuffled(rows: list, n: int) -> list:
    rows = list(rows)
    random.Random(SHUFFLE_SEED).shuffle(rows)
    return rows[:n]


def _tickets(n: int) -> list[tuple[str, str]]:
    with (data_dir() / "banking77" / "test.csv").open(encoding="utf-8") as f:
        rows = _shuffled(csv.DictReader(f), n)
    return [(row["text"], row["category"]) for row in rows]


def _jsonl(*parts: str) -> list[dict]:
    with data_dir().joinpath(*parts).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _receipts(n: int) -> list[tuple[str, dict]]:
    rows = _shuffled(_jsonl("sroie", "receipts.jsonl"), n)
    return [("\n".join(line["text"] for line in r["lines"]), r["fields"]) for r in rows]


def _coding(n: int) -> list[tuple[str, str]]:
    rows = _shuffled(_jsonl("humaneval", "problems.jsonl"), n)
    return [(r["prompt"], r["prompt"] + r["canonical_solution"]) for r in rows]


@pytest.fixture(scope="module")
def stream():
    """Tickets of 20 intents (2 each), 30 random tickets, 30 receipts, 30 coding requests.

    Below about 30 calls a task, k-means on these embeddings is fragile (a few near-identical
    tickets or receipts form their own clusters), so the three-task slice uses 30 each.
    """
    from slm_agents.finetune.flywheel.embed import embed_texts

    parts = {
        "intents": _intent_tickets(20, 2),
        "ticket": _tickets(30),
        "receipt": _receipts(30),
        "code": _coding(30),
    }
    calls = [(task, *call) for task, part in parts.items() for call in part]
    tasks = [task for task, _, _ in calls]
    inputs = [text for _, text, _ in calls]
    outputs = [answer for _, _, answer in calls]
    return tasks, inputs, outputs, embed_texts(inputs)


def _take(stream, wanted):
    tasks, inputs, outputs, vectors = stream
    rows = [i for i, task in enumerate(tasks) if task in wanted]
    return (
        [tasks[i] for i in rows],
        [inputs[i] for i in rows],
        [outputs[i] for i in rows],
        vectors[rows],
    )


def _cluster_of(clustering, tasks, task):
    """The cluster holding most calls of ``task``."""
    ids = [clustering.labels[i] for i, t in enumerate(tasks) if t == task]
    return clustering.clusters[max(set(ids), key=ids.count)]


def test_tickets_and_coding_requests_separate_as_two_tasks(stream):
    tasks, inputs, outputs, _ = _take(stream, {"intents", "code"})
    clustering = cluster_calls(inputs, outputs)  # embeds with the bundled encoder itself

    assert clustering.k == 2, clustering.reason
    assert adjusted_rand_score(tasks, clustering.labels) >= 0.9
    tickets = _cluster_of(clustering, tasks, "intents")
    code = _cluster_of(clustering, tasks, "code")
    assert tickets.output_type.kind == "classification", tickets.output_type.reason
    assert len(tickets.output_type.labels) == 20
    assert code.output_type.kind == "generation", code.output_type.reason
    assert set(tickets.terms) & {"card", "transfer", "account", "money", "payment"}
    assert set(code.terms) & {"return", "list", "numbers", "string", "def", "int"}
    assert tickets.name == "-".join(tickets.terms[:3])


def test_three_tasks_come_out_with_their_output_types(stream):
    tasks, inputs, outputs, vectors = _take(stream, {"ticket", "receipt", "code"})
    costs = [{"ticket": 0.001, "receipt": 0.004, "code": 0.01}[task] for task in tasks]
    clustering = cluster_calls(inputs, outputs, costs, vectors=vectors)

    assert clustering.k == 3, clustering.reason
    assert adjusted_rand_score(tasks, clustering.labels) >= 0.9
    receipts = _cluster_of(clustering, tasks, "receipt")
    assert receipts.output_type.kind == "extraction", receipts.output_type.reason
    assert receipts.output_type.keys == ("address", "company", "date", "total")
    assert set(receipts.terms) & {"total", "rm", "gst", "tax", "cash", "invoice"}
    assert _cluster_of(clustering, tasks, "code").output_type.kind == "generation"
    assert sum(c.cost_share for c in clustering.clusters) == pytest.approx(1.0)
    assert sum(c.call_share for c in clustering.clusters) == pytest.approx(1.0)
    code = _cluster_of(clustering, tasks, "code")
    assert code.cost_share == pytest.approx(
        sum(cost for cost, task in zip(costs, tasks, strict=True) if task == "code") / sum(costs),
        abs=0.05,
    )
    # Largest cluster first; every call in exactly one cluster; JSON-ready.
    sizes = [c.size for c in clustering.clusters]
    assert sizes == sorted(sizes, reverse=True)
    members = sorted(i for c in clustering.clusters for i in c.members)
    assert members == list(range(len(inputs)))
    report = json.loads(json.dumps(clustering.to_dict()))
    assert report["k"] == 3 and len(report["clusters"]) == 3
    assert all(len(c["examples"]) == 3 for c in report["clusters"])
    # New calls go to their task's cluster by nearest centroid.
    assert clustering.assign(vectors) == clustering.labels


def test_a_later_run_keeps_the_clusters_it_found(stream):
    """Read back from JSON and regrouped over new calls, the clusters keep ids and names."""
    from slm_agents.finetune.flywheel.cluster import Clustering, regroup

    tasks, inputs, outputs, vectors = _take(stream, {"ticket", "receipt", "code"})
    first = cluster_calls(inputs, outputs, vectors=vectors)
    again = Clustering.from_dict(json.loads(json.dumps(first.to_dict())))
    assert again.to_dict() == first.to_dict()
    older = first.to_dict()  # a state file from before clusters kept their answer shape
    for cluster in older["clusters"]:
        del cluster["shape"]
    derived = Clustering.from_dict(older).clusters
    assert all(new.shape in (None, c.shape) for c, new in zip(first.clusters, derived, strict=True))
    receipts = _cluster_of(first, tasks, "receipt")
    assert derived[receipts.id].shape == "json:address,company,date,total" == receipts.shape

    later = regroup(again, inputs[1::2], outputs[1::2], vectors=vectors[1::2])
    assert [c.name for c in later.clusters] == [c.name for c in first.clusters]
    assert later.labels == first.labels[1::2]
    receipts = _cluster_of(later, tasks[1::2], "receipt")
    assert receipts.output_type.kind == "extraction"
    assert sum(c.size for c in later.clusters) == len(inputs[1::2])


@pytest.mark.parametrize("task", ["intents", "code"])
def test_one_task_stream_is_one_cluster(stream, task):
    _, inputs, outputs, vectors = _take(stream, {task})
    clustering = cluster_calls(inputs, outputs, vectors=vectors)

    assert clustering.k == 1, clustering.reason
    assert "one cluster" in clustering.reason
    assert clustering.labels == [0] * len(inputs)
    (only,) = clustering.clusters
    assert only.call_share == 1.0 and only.cost_share is None


def test_same_seed_same_clusters(stream):
    _, inputs, outputs, vectors = stream
    first = cluster_calls(inputs, outputs, vectors=vectors, seed=3)
    again = cluster_calls(inputs, outputs, vectors=vectors, seed=3)
    assert first.to_dict() == again.to_dict()


def test_bad_calls_get_clear_errors():
    vectors = numpy.eye(3)
    with pytest.raises(ValueError, match="inputs is empty"):
        cluster_calls([], [])
    with pytest.raises(ValueError, match="3 inputs but 2 outputs"):
        cluster_calls(["a", "b", "c"], ["x", "y"], vectors=vectors)
    with pytest.raises(ValueError, match="at least 2 calls"):
        cluster_calls(["a"], ["x"], vectors=vectors[:1])
    with pytest.raises(ValueError, match="call 2 has no output"):
        cluster_calls(["a", "b", "c"], ["x", "y", None], vectors=vectors)
    with pytest.raises(ValueError, match="input 1 is empty"):
        cluster_calls(["a", " ", "c"], ["x", "y", "z"], vectors=vectors)
    with pytest.raises(ValueError, match="3 calls but 2 costs"):
        cluster_calls(["a", "b", "c"], ["x", "y", "z"], [1.0, 2.0], vectors=vectors)
    with pytest.raises(ValueError, match="cost 2 is -1"):
        cluster_calls(["a", "b", "c"], ["x", "y", "z"], [1.0, 2.0, -1], vectors=vectors)
    with pytest.raises(ValueError, match="vectors has 2 rows for 3 calls"):
        cluster_calls(["a", "b", "c"], ["x", "y", "z"], vectors=vectors[:2])
    with pytest.raises(ValueError, match="k_range"):
        cluster_calls(["a", "b", "c"], ["x", "y", "z"], vectors=vectors, k_range=(1, 4))


def test_two_calls_are_one_cluster():
    clustering = cluster_calls(["a b", "c d"], ["x", "y"], [0.0, 0.0], vectors=numpy.eye(2))
    assert clustering.k == 1 and "too few" in clustering.reason
    assert clustering.clusters[0].cost_share is None  # costs sum to zero


# Output types ---------------------------------------------------------------------------------


def test_intents_are_classification_with_their_labels():
    found = detect_output_type([intent for _, intent in _intent_tickets(4, 5)])
    assert found.kind == "classification"
    assert len(found.labels) == 4
    assert "4 distinct short answers over 20 calls" in found.reason


def test_receipt_fields_are_extraction_as_dicts_or_json_strings():
    fields = [answer for _, answer in _receipts(10)]
    as_text = [json.dumps(f) if i % 2 else f for i, f in enumerate(fields)]
    found = detect_output_type(as_text)
    assert found.kind == "extraction", found.reason
    assert found.keys == ("address", "company", "date", "total")
    # Most of the time is enough: one answer of ten without the total.
    fields[3] = {k: v for k, v in fields[3].items() if k != "total"}
    assert detect_output_type(fields).kind == "extraction"


def test_code_and_short_open_answers_are_generation():
    code = detect_output_type([answer for _, answer in _coding(10)])
    assert code.kind == "generation" and "short" in code.reason
    capitals = detect_output_type(["Paris", "Rome", "Madrid", "Berlin", "Paris", "Oslo"])
    assert capitals.kind == "generation" and "repeat" in capitals.reason


def test_mixed_outputs_are_generation():
    fields = [answer for _, answer in _receipts(5)]
    shapes = detect_output_type([{"a": 1}, {"b": 2}, {"a": 1, "b": 2}, {"c": 3}])
    assert shapes.kind == "generation" and "key set" in shapes.reason
    assert detect_output_type(fields + ["card_arrival"] * 5).kind == "generation"
    # A JSON array or a broken object is text, not an object: here, two repeated labels.
    found = detect_output_type(["[1, 2]", '{"a": '] * 3)
    assert found.kind == "classification" and found.labels == ("[1, 2]", '{"a":')


def test_numbers_and_booleans_count_as_labels():
    found = detect_output_type([True, False, True, 1, 1])
    assert found.kind == "classification" and found.labels == ("1", "false", "true")


def test_bad_outputs_get_clear_errors():
    with pytest.raises(ValueError, match="empty list"):
        detect_output_type([])
    with pytest.raises(ValueError, match="output 1 is missing"):
        detect_output_type(["a", None])
    with pytest.raises(TypeError, match="output 0 is a list"):
        detect_output_type([["a"]])
    with pytest.raises(TypeError, match="list of outputs"):
        detect_output_type("card_arrival")


def test_answers_of_different_shapes_are_never_one_task():
    """Inputs that embed alike but get a label, an object or free text back are three tasks:
    a specialist is chosen per output type (and by inputs alone, a wide task swallows a
    small one: see ``_split_by_shape``)."""
    from slm_agents.finetune.flywheel.cluster import answer_shape

    rng = numpy.random.default_rng(0)
    vectors = rng.normal(size=(90, 384)) + 5.0  # one blob: inputs alone say one task
    outputs = (["card_arrival", "top_up"] * 15 + [{"total": "9.00", "date": "1/2"}] * 30
               + ["def f(x):\n    return x\n"] * 30)  # fmt: skip
    clustering = cluster_calls([f"call {i}" for i in range(90)], outputs, vectors=vectors)
    assert clustering.k == 3, clustering.reason
    assert sorted(c.output_type.kind for c in clustering.clusters) == [
        "classification", "extraction", "generation"]  # fmt: skip
    assert answer_shape('{"b": 1, "a": 2}') == "json:a,b" == answer_shape({"a": 1, "b": 2})
    assert answer_shape("card_arrival") == "short" and answer_shape("a\nb") == "text"


def test_new_calls_join_a_cluster_answered_as_they_are():
    """A ticket whose input lies nearer the receipts' centroid still joins the tickets when
    its answer is a label: a later run keeps each task's calls together (and retrains only
    the clusters that really got new calls)."""
    from slm_agents.finetune.flywheel.cluster import regroup

    rng = numpy.random.default_rng(1)
    a, b = rng.normal(size=384), rng.normal(size=384)
    vectors = numpy.vstack(
        [a + 0.1 * rng.normal(size=(40, 384)), b + 0.1 * rng.normal(size=(40, 384))]
    )
    outputs = ["label_a", "label_b"] * 20 + [{"total": "1.00"}] * 40
    first = cluster_calls([f"call {i}" for i in range(80)], outputs, vectors=vectors)
    (labels,) = [c.id for c in first.clusters if c.shape == "short"]
    (objects,) = [c.id for c in first.clusters if c.shape == "json:total"]
    stray = (b + 0.1 * rng.normal(size=384))[None, :]  # a label-answered call among the objects
    assert first.assign(stray) == [objects]  # by input alone, as the router sees a request
    assert first.assign(stray, ["label_a"]) == [labels]
    later = regroup(first, ["new call", "another"], ["label_b", {"total": "2.00"}],
                    vectors=numpy.vstack([stray, stray]))  # fmt: skip
    assert later.labels == [labels, objects]

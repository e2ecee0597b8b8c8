"""SupportRouter on real BANKING77 tickets: a small intent classifier trained here in seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from slm_agents.datasets import data_dir
from slm_agents.patterns import Cascade
from slm_agents.specialists import SupportRouter
from slm_agents.specialists.support_router import UNASSIGNED, load_departments, scale

ROOT = Path(__file__).resolve().parents[2]
GROUPING = ROOT / "examples" / "banking77_departments.yaml"
BANKING77 = data_dir() / "banking77"
INTENTS = ["card_arrival", "lost_or_stolen_card", "pending_transfer", "exchange_rate"]


def tickets(split: str, per_intent: int) -> tuple[list[str], list[str]]:
    taken: dict[str, int] = {}
    texts, labels = [], []
    with (BANKING77 / f"{split}.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in INTENTS and taken.get(row["category"], 0) < per_intent:
                taken[row["category"]] = taken.get(row["category"], 0) + 1
                texts.append(row["text"])
                labels.append(row["category"])
    return texts, labels


@pytest.fixture(scope="module")
def intent_model(tmp_path_factory):
    """A 4-intent LoRA classifier: centroid head plus a few steps (seconds)."""
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.data import LabelledTexts
    from slm_agents.finetune.loop import TrainConfig

    texts, labels = tickets("train", 12)
    out = tmp_path_factory.mktemp("router")
    train_classifier(
        LabelledTexts(texts, labels, "banking77[slice]"),
        out,
        settings=ClassifierSettings(rank=4, alpha=8, max_length=48, validation=0.25),
        config=TrainConfig(epochs=1, batch_size=8, max_steps=4),
        progress=False,
        track=False,
    )
    return out


def test_tickets_get_an_intent_a_department_and_a_confidence(intent_model):
    router = SupportRouter(intent_model, GROUPING)
    _, of_intent = load_departments(GROUPING)
    texts, labels = tickets("test", 3)
    results = router.run_batch(texts)
    assert all(r.ok for r in results)
    right = sum(r.output["intent"] == y for r, y in zip(results, labels, strict=True))
    assert right >= 0.75 * len(labels)  # the centroid head alone is far better than chance
    for r in results:
        assert r.output["department"] == of_intent[r.output["intent"]]
        assert 0.0 <= r.confidence <= 1.0 and r.path[0].agent == "support-router"
        assert r.output["escalate"] is False and r.path[0].decision.startswith("accept")


def test_low_confidence_and_out_of_scope_tickets_escalate(intent_model):
    texts, _ = tickets("test", 2)
    strict = SupportRouter(intent_model, GROUPING, threshold=1.0).run_batch(texts)
    assert all(r.output["escalate"] and "escalate" in r.path[0].decision for r in strict)
    # an intent that no department claims is out of scope
    partial = {"card_arrival": "cards", "lost_or_stolen_card": "cards"}
    results = SupportRouter(intent_model, partial).run_batch(texts)
    orphans = [r for r in results if r.output["intent"] not in partial]
    assert orphans and all(
        r.output["department"] == UNASSIGNED and r.output["escalate"] and r.confidence == 0.0
        for r in orphans
    )


def test_calibration_fits_a_temperature_and_a_threshold_for_a_target_share(intent_model):
    router = SupportRouter(intent_model, GROUPING)
    texts, labels = tickets("test", 6)
    report = router.calibrate(texts, labels, target_share=0.25)
    assert report["temperature"] == pytest.approx(router.temperature, abs=1e-4)
    assert router.temperature != 1.0
    assert report["nll_after"] <= report["nll_before"]
    escalated = sum(r.output["escalate"] for r in router.run_batch(texts))
    assert abs(escalated - 0.25 * len(texts)) <= 1
    with pytest.raises(ValueError, match="does not know"):
        router.calibrate(texts[:1], ["not_an_intent"])


def test_temperature_scaling_keeps_the_ranking_and_sharpens_or_softens():
    p = {"a": 0.6, "b": 0.3, "c": 0.1}
    sharp, soft = scale(p, 0.5), scale(p, 2.0)
    assert max(sharp, key=sharp.get) == max(soft, key=soft.get) == "a"
    assert sharp["a"] > 0.6 > soft["a"] and sum(sharp.values()) == pytest.approx(1.0)


def test_a_zero_shot_department_model_routes_without_intents(router):
    support = SupportRouter(router, GROUPING, name="desk")
    [r] = support.run_batch(["I lost my card yesterday"])
    assert r.output == {"intent": None, "department": "cards", "escalate": False}


def test_escalated_tickets_go_to_the_next_tier_through_a_cascade(intent_model):
    from slm_agents.agent import FunctionAgent

    strong = FunctionAgent("llm-tier", lambda task: ({"department": "cards"}, 1.0))
    desk = Cascade(SupportRouter(intent_model, GROUPING, threshold=0.999), strong, threshold=0.999)
    [r] = desk.run_batch(["Where is my new card? It has not arrived."])
    assert "llm-tier" in r.agents


def test_bad_input_and_bad_configuration_are_named(intent_model, tmp_path):
    router = SupportRouter(intent_model, GROUPING)
    ok, empty = router.run_batch(["my card has not arrived", "   "])
    assert ok.ok and empty.error == "task text is empty"
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "a: {description: x, intents: [card_arrival]}\nb: {description: y, intents: [card_arrival]}"
    )
    with pytest.raises(ValueError, match="'card_arrival' is in both 'a' and 'b'"):
        load_departments(twice)
    broken = tmp_path / "broken.yaml"
    broken.write_text("cards: {description: [unclosed")
    with pytest.raises(ValueError, match="cannot read the department grouping") as caught:
        load_departments(broken)
    assert caught.value.__cause__ is not None  # the YAML parser's own error, with its position
    with pytest.raises(ValueError, match="threshold must be in"):
        SupportRouter(intent_model, GROUPING, threshold=1.5)
    with pytest.raises(ValueError, match="confidence"):
        SupportRouter(intent_model, GROUPING, confidence="vibes")

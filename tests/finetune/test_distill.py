"""Distillation: a 2-block student learns from a teacher's probabilities (model or logged)."""

from __future__ import annotations

import json

import pytest
import torch
from training_slices import SMALL, SMALL_RUN

from slm_agents.finetune.classifier import ClassifierSettings
from slm_agents.finetune.data import DataError
from slm_agents.finetune.distill import distill_classifier, teacher_probabilities
from slm_agents.finetune.distill_loss import DistillSettings, distillation_loss
from slm_agents.models import EncoderClassifier


def test_the_loss_is_zero_only_when_the_student_matches_a_confident_teacher():
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    labels = torch.tensor([0, 1])
    settings = DistillSettings(temperature=1.0, alpha=1.0)
    matching = distillation_loss(teacher.log(), teacher, labels, settings)
    opposite = distillation_loss(teacher.flip(-1).log(), teacher, labels, settings)
    assert matching.item() == pytest.approx(0.0, abs=1e-6) and opposite.item() > 0.5


def test_a_shallow_student_learns_from_a_trained_teacher(trained_router, tickets_train, tmp_path):
    _, teacher = trained_router
    settings = ClassifierSettings(**{**SMALL.__dict__, "layers": 2})
    result = distill_classifier(
        tickets_train, tmp_path / "student", str(teacher), settings=settings, config=SMALL_RUN,
        progress=False, track=False,
    )  # fmt: skip
    student = EncoderClassifier(str(tmp_path / "student"))
    assert student.model.encoder.config.num_hidden_layers == 2
    assert json.loads((tmp_path / "student" / "classifier.json").read_text())["layers"] == 2
    assert result.accuracy is not None and result.accuracy >= 0.5  # 4 intents, chance 0.25


def test_logged_teacher_outputs_become_soft_targets(tmp_path):
    log = tmp_path / "llm_calls.jsonl"
    rows = [
        {"text": "card not here", "probabilities": {"card_arrival": 0.7, "exchange_rate": 0.3}},
        {"text": "rate for euros", "label": "exchange_rate"},
    ]
    log.write_text("\n".join(json.dumps(r) for r in rows))
    probs = teacher_probabilities(
        log, ["rate for euros", "card not here"], ["card_arrival", "exchange_rate"]
    )
    assert probs.tolist() == [[0.0, 1.0], [pytest.approx(0.7), pytest.approx(0.3)]]
    with pytest.raises(DataError, match="no teacher output for 1 of 2"):
        teacher_probabilities(log, ["rate for euros", "unseen"], ["card_arrival", "exchange_rate"])
    with pytest.raises(DataError, match="never gives probabilities for labels"):
        teacher_probabilities(log, ["rate for euros"], ["exchange_rate", "pending_transfer"])

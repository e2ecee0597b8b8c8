"""Fixtures for the finetune tests: real BANKING77 slices and one small trained router."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from training_slices import SMALL, SMALL_RUN, banking_slice

from slm_agents.finetune.classifier import train_classifier
from slm_agents.finetune.data import LabelledTexts


@pytest.fixture(scope="session")
def tickets_train() -> LabelledTexts:
    return banking_slice("train", 12)


@pytest.fixture(scope="session")
def tickets_test() -> LabelledTexts:
    return banking_slice("test", 10)


@pytest.fixture(scope="session")
def write_csv(tmp_path_factory):
    def write(data: LabelledTexts, name: str = "tickets.csv") -> Path:
        path = tmp_path_factory.mktemp("data") / name
        with path.open("w", encoding="utf-8", newline="") as f:
            out = csv.writer(f)
            out.writerow(["text", "intent"])
            out.writerows(zip(data.texts, data.labels, strict=True))
        return path

    return write


@pytest.fixture(scope="session")
def trained_router(tickets_train, tmp_path_factory):
    """A LoRA router trained on the 4-intent slice (10 steps, a few seconds)."""
    output = tmp_path_factory.mktemp("clf") / "router"
    result = train_classifier(
        tickets_train, output, settings=SMALL, config=SMALL_RUN, progress=False, track=False
    )
    return result, output

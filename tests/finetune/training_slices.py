"""Small, real slices of BANKING77 and tiny training settings shared by the finetune tests."""

from __future__ import annotations

import csv

from slm_agents.datasets import data_dir
from slm_agents.finetune.classifier import ClassifierSettings
from slm_agents.finetune.data import LabelledTexts
from slm_agents.finetune.loop import TrainConfig

BANKING77 = data_dir() / "banking77"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pending_transfer"]
SMALL = ClassifierSettings(rank=4, alpha=8, max_length=48, validation=0.25)
SMALL_RUN = TrainConfig(epochs=2, batch_size=8, warmup_steps=2)


def banking_slice(split: str, per_label: int, labels=LABELS) -> LabelledTexts:
    path = BANKING77 / f"{split}.csv"
    taken: dict[str, int] = {}
    texts, names = [], []
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = row["category"]
            if label in labels and taken.get(label, 0) < per_label:
                taken[label] = taken.get(label, 0) + 1
                texts.append(row["text"])
                names.append(label)
    return LabelledTexts(texts, names, f"banking77/{split}.csv[slice]")

"""Small, real slices of BANKING77 for training tests (a few labels, a dozen rows each)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from finetune.data import LabelledTexts

BANKING77 = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "banking77"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pending_transfer"]


def banking_slice(split: str, per_label: int, labels=LABELS) -> LabelledTexts:
    path = BANKING77 / f"{split}.csv"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests expect ../shared/datasets beside the checkout")
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

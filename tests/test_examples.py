"""The shipped example data stays consistent with the public data sets it was cut from."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from slm_agents.datasets import data_dir
from slm_agents.specialists.support_router import load_departments

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DATA = data_dir()


def test_every_banking77_intent_has_exactly_one_department():
    descriptions, intent_to_dept = load_departments(EXAMPLES / "banking77_departments.yaml")
    assert set(intent_to_dept.values()) == set(descriptions)
    categories = DATA / "banking77" / "categories.json"
    names = json.loads(categories.read_text())
    assert sorted(intent_to_dept) == sorted(names)  # no intent missing, none invented


def test_sample_tickets_use_known_intents():
    _, intent_to_dept = load_departments(EXAMPLES / "banking77_departments.yaml")
    with open(EXAMPLES / "data" / "support_tickets.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and all(r["category"] in intent_to_dept for r in rows)

"""The flagship job: a router fine-tuned on past tickets, calibrated on held-out ones, and a
human-review queue for the tickets it is unsure of. Real training (a small slice), real job."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from slm_agents.datasets import data_dir
from slm_agents.job import review_queue_of, run_job
from slm_agents.specialists.support_router import load_departments
from slm_agents.teamspec import TeamSpecError, load_team_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_, DEPARTMENT = load_departments(EXAMPLES / "banking77_departments.yaml")  # intent -> department
SPEC = """
name: desk-test
agents:
  desk:
    kind: support-router
    model: all-minilm-l6-v2
    departments_file: banking77_departments.yaml
    train: {data: train.csv, label_column: category, epochs: 1, calibration: 0.25,
            target_accuracy: 0.99}
  review: {kind: review}
flow:
  cascade: {small: desk, large: review, threshold: calibrated, answer_field: department}
input: {text_column: text, id_column: id, label_column: department, label_field: department}
"""


def _slice(split: str, per_intent: int, path: Path) -> Path:
    """The first ``per_intent`` tickets of each of the 77 intents."""
    taken: dict[str, int] = {}
    with (data_dir() / "banking77" / f"{split}.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "category", "department"])
        for n, row in enumerate(rows):
            if taken.setdefault(row["category"], 0) < per_intent:
                taken[row["category"]] += 1
                writer.writerow([f"{split}-{n}", row["text"], row["category"],
                                 DEPARTMENT[row["category"]]])  # fmt: skip
    return path


@pytest.fixture
def desk(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_AGENTS_CACHE", str(tmp_path / "cache"))  # a fresh trained-router cache
    shutil.copy(EXAMPLES / "banking77_departments.yaml", tmp_path)
    _slice("train", 6, tmp_path / "train.csv")  # 462 tickets: a weak router, some doubt
    (tmp_path / "desk.yaml").write_text(SPEC)
    return tmp_path


def test_first_run_trains_and_calibrates_later_runs_reuse_it(desk):
    tickets = _slice("test", 1, desk / "tickets.csv")  # one of each intent
    out = desk / "out.jsonl"
    summary = run_job(desk / "desk.yaml", tickets, out, track=False, progress=False)

    [trained] = [p for p in (desk / "cache" / "trained-routers").iterdir() if p.is_dir()]
    [calibration_file] = trained.glob("calibration-*.json")
    calibration = json.loads(calibration_file.read_text())
    assert 0.0 <= calibration["threshold"] <= 1.0 and calibration["held_out_tickets"] == 154
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 77 and all(r["error"] is None for r in records)
    # one shape: accepted and reviewed tickets alike carry the router's fields
    assert {tuple(sorted(r["output"])) for r in records} == {("department", "escalate", "intent")}
    reviewed = [r for r in records if r["handled_by"] == "review"]
    automatic = [r for r in records if r["handled_by"] == "slm"]
    assert len(reviewed) + len(automatic) == 77
    assert reviewed, f"no ticket below the threshold {calibration['threshold']}: nothing tested"
    assert all(r["output"]["department"] is None and "correct" not in r for r in reviewed)
    guesses = [r["guess_correct"] for r in reviewed]  # the router's own answer, kept for scoring
    assert summary.reviewed_guess_accuracy == pytest.approx(sum(guesses) / len(guesses), abs=1e-4)
    assert all(r["confidence"] >= calibration["threshold"] for r in automatic)
    queued = [json.loads(line) for line in review_queue_of(out).read_text().splitlines()]
    assert [q["id"] for q in queued] == [r["id"] for r in reviewed]
    assert summary.review_share == pytest.approx(len(reviewed) / 77, abs=1e-4)
    assert summary.automatic_share == pytest.approx(len(automatic) / 77, abs=1e-4)
    assert summary.labelled == len(automatic)  # accuracy counts only answers that went out
    if automatic:
        right = sum(r["correct"] for r in automatic)
        assert summary.accuracy == pytest.approx(right / len(automatic), abs=1e-4)
    assert 0 < summary.cost_usd < summary.llm_only_cost_usd

    stamp = calibration_file.stat().st_mtime_ns, (trained / "training.json").stat().st_mtime_ns
    again = run_job(desk / "desk.yaml", tickets, desk / "again.jsonl", track=False, progress=False)
    assert (
        calibration_file.stat().st_mtime_ns,
        (trained / "training.json").stat().st_mtime_ns,
    ) == stamp
    assert again.review_share == summary.review_share  # the same router, the same threshold


def test_changing_the_training_data_trains_a_new_router(desk):
    spec = load_team_spec(desk / "desk.yaml")
    spec.build()
    _slice("train", 5, desk / "train.csv")
    spec.build()
    assert len([p for p in (desk / "cache" / "trained-routers").iterdir() if p.is_dir()]) == 2


def test_a_calibrated_threshold_needs_a_trained_router(tmp_path):
    shutil.copy(EXAMPLES / "banking77_departments.yaml", tmp_path)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        SPEC.replace("    train: {data: train.csv, label_column: category, epochs: 1, "
                     "calibration: 0.25,\n            target_accuracy: 0.99}\n", "")
    )  # fmt: skip
    with pytest.raises(TeamSpecError, match="'calibrated' needs agents.desk.train"):
        load_team_spec(spec)
    spec.write_text(
        SPEC.replace("threshold: calibrated, answer_field: department", "threshold: 0.5")
    )
    with pytest.raises(TeamSpecError, match="flow.cascade.answer_field"):
        load_team_spec(spec)
    spec.write_text(SPEC)
    with pytest.raises(TeamSpecError, match="agents.desk.train.data: no file train.csv"):
        load_team_spec(spec)

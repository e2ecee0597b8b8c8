"""A support router fine-tuned on the company's past tickets, trained on first use and cached.

A team spec can ask for a router that does not exist yet (``train:`` on a ``support-router``):
the first run fine-tunes the encoder with LoRA on the labelled tickets (about 3 minutes for
BANKING77's 10,003 on two CPU cores, with a live progress bar), and every later run loads the
result from the cache. The cache key is a hash of everything that shapes the model (the data
file's bytes, the base model and the training settings), so editing any of them trains afresh
and nothing stale is ever reused; the calibration is cached beside it under a hash of the
department grouping and the target (a few seconds to redo, so changing those never retrains).

Calibration is scored on tickets the router never trained on: ``calibration`` holds out a
stratified share of the file before training (the training itself holds out its own validation
share for choosing the epoch). On the held-out tickets the router fits a temperature, then the
lowest threshold at which the tickets it accepts reach ``target_accuracy`` at department level.
That threshold is what a ``cascade`` with ``threshold: calibrated`` escalates below.

This module sits in the application layer (team specs, the job): it is the one place outside
``slm_agents.finetune`` that trains, and nothing in the library layer imports it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TRAINING_FILE = "training.json"  # the settings, written last: a directory with it is complete


@dataclass(frozen=True)
class RouterTraining:
    """What to train on and how; every field is part of the cache key."""

    data: str  # labelled CSV/JSONL of past tickets (intents)
    text_column: str = "text"
    label_column: str = "label"
    base_model: str = "all-minilm-l6-v2"
    epochs: int = 2
    max_minutes: float = 10.0
    per_label: int | None = None  # keep at most this many tickets per intent (quick runs)
    calibration: float = 0.1  # share held out from training to calibrate the threshold
    target_accuracy: float = 0.99  # department accuracy the accepted held-out tickets reach
    seed: int = 0


@dataclass(frozen=True)
class TrainedRouter:
    """A trained classifier directory and the calibration measured on held-out tickets."""

    path: Path
    temperature: float
    threshold: float
    report: dict[str, Any]


def trained_router(training: RouterTraining, departments: str | Path) -> TrainedRouter:
    """The cached router for ``training``; trains and calibrates it first when it is missing."""
    from filelock import FileLock

    from slm_agents.models.sources import cache_dir

    model_key = _digest(_model_settings(training), Path(training.data).read_bytes())
    target = cache_dir() / "trained-routers" / f"router-{model_key}"
    calibration_key = _digest(training.target_accuracy, Path(departments).read_bytes())
    calibration_file = target / f"calibration-{calibration_key}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / TRAINING_FILE).exists():
            building = target.with_name(target.name + ".partial")
            _train(training, building)  # continues a partial run from its checkpoint
            if target.exists():
                shutil.rmtree(target)
            building.rename(target)
        if not calibration_file.exists():
            texts, intents = _held_out(training)
            report = calibrate(target, departments, texts, intents, training.target_accuracy)
            calibration_file.write_text(json.dumps(report, indent=2), encoding="utf-8")
    report = json.loads(calibration_file.read_text(encoding="utf-8"))
    return TrainedRouter(target, report["temperature"], report["threshold"], report)


def _model_settings(training: RouterTraining) -> dict[str, Any]:
    return {k: v for k, v in asdict(training).items() if k not in ("data", "target_accuracy")}


def _digest(settings: Any, content: bytes) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(content)
    return digest.hexdigest()[:16]


def _split(training: RouterTraining) -> tuple[Any, Any]:
    """(tickets to train on, held-out tickets to calibrate on): seeded, stratified."""
    from slm_agents.finetune.data import load_labelled

    tickets = load_labelled(training.data, training.text_column, training.label_column)
    if training.per_label is not None:
        tickets = _first_per_label(tickets, training.per_label)
    return tickets.split(training.calibration, seed=training.seed)


def _held_out(training: RouterTraining) -> tuple[list[str], list[str]]:
    held_out = _split(training)[1]
    return held_out.texts, held_out.labels


def _train(training: RouterTraining, out: Path) -> None:
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.loop import TrainConfig

    fit, _ = _split(training)
    train_classifier(
        fit,
        out,
        settings=ClassifierSettings(base=training.base_model),
        config=TrainConfig(
            epochs=training.epochs, max_minutes=training.max_minutes, seed=training.seed
        ),
        track=False,  # the job's own MLflow run is open; the training is part of its setup
    )
    (out / TRAINING_FILE).write_text(json.dumps(asdict(training), indent=2), encoding="utf-8")


def calibrate(
    model_dir: str | Path,
    departments: str | Path,
    texts: list[str],
    intents: list[str],
    target_accuracy: float,
) -> dict[str, Any]:
    """Temperature and threshold from held-out tickets (see the module docstring)."""
    from slm_agents.specialists.support_router import SupportRouter

    router = SupportRouter(str(model_dir), departments)
    fitted = router.calibrate(texts, intents, target_accuracy=target_accuracy)
    held_out = {
        f"held_out_{k}": fitted.pop(k) for k in ("accepted_share", "accepted_accuracy", "accuracy")
    }
    return {
        **fitted,
        "threshold": round(router.threshold, 6),
        "target_accuracy": target_accuracy,
        "held_out_tickets": len(texts),
        **held_out,
    }


def _first_per_label(tickets: Any, per_label: int) -> Any:
    from slm_agents.finetune.data import LabelledTexts

    taken: dict[str, int] = {}
    texts, labels = [], []
    for text, label in zip(tickets.texts, tickets.labels, strict=True):
        if taken.get(label, 0) < per_label:
            taken[label] = taken.get(label, 0) + 1
            texts.append(text)
            labels.append(label)
    return LabelledTexts(texts, labels, f"{tickets.source}:first-{per_label}-per-label")

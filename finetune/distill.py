"""Distillation: a student classifier learns the teacher's probabilities, not just its labels.

The teacher can be anything that yields probabilities over the label set, so it works across
architectures: a trained classifier directory, any object with ``predict(texts)`` returning
:class:`~slm_agents.models.base.Prediction` (e.g. an ``EncoderClassifier``), or a JSONL file of
*logged* teacher outputs (``{"text": ..., "probabilities": {label: p}}`` or ``{"text", "label"}``),
which is how calls an LLM already answered become training signal for an SLM.

This module gathers the teacher's probabilities and hands them to the classifier recipe; the
loss itself is :mod:`slm_agents.finetune.distill_loss`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from slm_agents.finetune.classifier import ClassifierResult, ClassifierSettings, train_classifier
from slm_agents.finetune.data import DataError, LabelledTexts
from slm_agents.finetune.distill_loss import DistillSettings
from slm_agents.finetune.loop import TrainConfig


def teacher_probabilities(teacher: Any, texts: list[str], labels: list[str]) -> Any:
    """A ``[len(texts), len(labels)]`` tensor of the teacher's probabilities, columns = labels."""
    import torch

    if isinstance(teacher, str | Path) and Path(teacher).suffix in (".jsonl", ".ndjson"):
        rows = _logged(Path(teacher), texts, labels)
    else:
        if isinstance(teacher, str | Path):
            from slm_agents.models.classifier import EncoderClassifier

            teacher = EncoderClassifier(str(teacher))
        predictions = teacher.predict(texts)
        failed = [i for i, p in enumerate(predictions) if p.error]
        if failed:
            raise DataError(
                f"the teacher failed on {len(failed)} texts, e.g. row {failed[0]}: "
                f"{predictions[failed[0]].error}"
            )
        rows = [p.probabilities for p in predictions]
    missing = sorted(set(labels) - set().union(*(r.keys() for r in rows)))
    if missing:
        raise DataError(f"the teacher never gives probabilities for labels {missing[:10]}")
    table = torch.tensor([[float(r.get(name, 0.0)) for name in labels] for r in rows])
    return table / table.sum(-1, keepdim=True).clamp_min(1e-12)  # drop labels we do not train


def distill_classifier(
    data: LabelledTexts,
    output: str | Path,
    teacher: Any,
    *,
    validation: LabelledTexts | None = None,
    settings: ClassifierSettings | None = None,
    config: TrainConfig | None = None,
    distill: DistillSettings | None = None,
    progress: bool = True,
    track: bool = True,
) -> ClassifierResult:
    """Train a student classifier (``settings.base``, optionally fewer ``layers``) on ``data``
    with the teacher's soft targets."""
    settings, config = settings or ClassifierSettings(), config or TrainConfig()
    if validation is None:
        data, validation = data.split(settings.validation, seed=config.seed)
    soft = teacher_probabilities(teacher, data.texts, data.label_names)
    return train_classifier(
        data,
        output,
        validation=validation,
        settings=settings,
        config=config,
        soft_targets=soft,
        distill=distill or DistillSettings(),
        progress=progress,
        track=track,
    )


def _logged(path: Path, texts: list[str], labels: list[str]) -> list[dict[str, float]]:
    from slm_agents.finetune.data import read_rows

    rows, first = read_rows(path)
    by_text: dict[str, dict[str, float]] = {}
    for offset, row in enumerate(rows):
        where = f"{path}: row {first + offset}"
        if not isinstance(row.get("text"), str):
            raise DataError(f"{where}: no 'text'")
        probs = row.get("probabilities")
        if probs is None and isinstance(row.get("label"), str):
            probs = {row["label"]: 1.0}
        if not isinstance(probs, dict) or not probs:
            raise DataError(f"{where}: needs 'probabilities' {{label: p}} or a 'label'")
        bad = {k: v for k, v in probs.items() if not isinstance(v, int | float) or v < 0}
        if bad or not math.isfinite(sum(probs.values())):
            raise DataError(f"{where}: probabilities must be non-negative numbers, got {bad}")
        by_text[row["text"]] = {str(k): float(v) for k, v in probs.items()}
    absent = [t for t in texts if t not in by_text]
    if absent:
        raise DataError(
            f"{path}: no teacher output for {len(absent)} of {len(texts)} training texts, "
            f"e.g. {json.dumps(absent[0])}"
        )
    return [by_text[t] for t in texts]

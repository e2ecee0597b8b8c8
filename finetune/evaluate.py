"""Held-out evaluation through the same code path agents use (``EncoderClassifier.predict``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from slm_agents.finetune.classifier import confusion_summary
from slm_agents.finetune.data import DataError, LabelledTexts


def evaluate_classifier(
    model: str | Path | Any, data: LabelledTexts, *, progress: bool = True
) -> dict[str, Any]:
    """Accuracy of a classifier directory (or a loaded ``EncoderClassifier``) on labelled data.

    Labels in ``data`` that the classifier does not know are an error (it could never get them
    right, which usually means the wrong label column or the wrong model).
    """
    from slm_agents.models.classifier import EncoderClassifier

    classifier = model if isinstance(model, EncoderClassifier) else EncoderClassifier(str(model))
    unknown = sorted(set(data.labels) - set(classifier.labels))
    if unknown:
        raise DataError(
            f"{data.source}: labels the classifier does not know: {unknown[:10]}"
            f"{' ...' if len(unknown) > 10 else ''} (it knows {len(classifier.labels)} labels)"
        )
    started = time.perf_counter()
    predictions = classifier.predict(data.texts, progress=progress)
    seconds = time.perf_counter() - started
    predicted = [p.label or "<error>" for p in predictions]
    correct = sum(p == t for p, t in zip(predicted, data.labels, strict=True))
    return {
        "model": str(model) if not isinstance(model, EncoderClassifier) else classifier.name,
        "data": data.source,
        "n": len(data),
        "accuracy": round(correct / len(data), 4),
        "errors": sum(p.error is not None for p in predictions),
        "seconds": round(seconds, 2),
        "texts_per_second": round(len(data) / seconds, 1),
        "confusion": confusion_summary(predicted, data.labels),
    }

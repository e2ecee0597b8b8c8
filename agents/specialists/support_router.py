"""SupportRouter: a support ticket to an intent and a department, with a calibrated confidence.

Why a specialist rather than a bare ClassifierAgent: support desks think in departments, not in
77 intents, so the router maps each intent through a documented grouping
(``examples/banking77_departments.yaml``); and a threshold only means something when the
confidence is calibrated, so :meth:`SupportRouter.calibrate` fits a temperature on labelled
tickets (the usual fix for over- or under-confident softmax scores) and can pick the threshold
that escalates a target share. A ticket whose confidence is below the threshold, or whose intent
belongs to no department (out of scope: its confidence is then 0), comes back with
``escalate: True``; wrap the router in
a :class:`~slm_agents.patterns.Cascade` to hand those to the LLM tier.

The model is either a classifier trained on intents (``slm-agents finetune classifier``) or a
zero-shot classifier over the departments' descriptions; then ``intent`` is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from slm_agents.agent import Agent, classifier_confidence, merge, priced_step, split_valid
from slm_agents.models.base import TextClassifier
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.result import Result, Task, now

UNASSIGNED = "unassigned"  # the department of an intent that no department claims


def load_departments(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(department -> description, intent -> department) from a grouping YAML.

    Format: ``department: {description: ..., intents: [...]}``; an intent in two departments is an
    error naming both.
    """
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the department grouping ({exc})") from exc
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"{path}: expected 'department: {{description, intents}}' entries")
    descriptions, of_intent = {}, {}
    for dept, body in spec.items():
        if not isinstance(body, dict) or "description" not in body:
            raise ValueError(f"{path}: department {dept!r} needs a 'description'")
        descriptions[str(dept)] = str(body["description"])
        for intent in body.get("intents") or []:
            if intent in of_intent:
                raise ValueError(
                    f"{path}: intent {intent!r} is in both {of_intent[intent]!r} and {dept!r}"
                )
            of_intent[str(intent)] = str(dept)
    return descriptions, of_intent


class SupportRouter(Agent):
    """Ticket -> ``{"intent", "department", "escalate"}``; confidence calibrated by temperature.

    ``model``: an ``EncoderClassifier`` (any ``TextClassifier``) or a classifier directory.
    ``departments``: the grouping YAML's path, or an ``intent -> department`` mapping.
    ``threshold``: below it a ticket escalates. ``confidence``: ``"probability"`` or
    ``"margin"`` (see ``ClassifierAgent``).
    """

    def __init__(
        self,
        model: TextClassifier | str | Path,
        departments: str | Path | Mapping[str, str],
        *,
        name: str = "support-router",
        threshold: float = 0.0,
        temperature: float = 1.0,
        confidence: str = "probability",
        prices: PriceTable = DEFAULT_TABLE,
    ):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{name}: threshold must be in [0, 1], got {threshold}")
        if temperature <= 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature}")
        if isinstance(model, str | Path):
            from slm_agents.models import EncoderClassifier

            model = EncoderClassifier(str(model))
        if isinstance(departments, str | Path):
            self.descriptions, self.of_intent = load_departments(departments)
        else:
            self.descriptions, self.of_intent = {}, dict(departments)
        classifier_confidence({}, confidence)  # validates the measure's name
        self.name, self.model, self.prices = name, model, prices
        self.threshold, self.temperature, self.measure = threshold, temperature, confidence
        self.by_department = set(model.labels) <= set(self.of_intent.values()) | set(
            self.descriptions
        )

    # ------------------------------------------------------------------------------ routing
    def route(self, label: str) -> tuple[str | None, str]:
        """(intent, department) of one predicted label."""
        if self.by_department:
            return None, label
        return label, self.of_intent.get(label, UNASSIGNED)

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        if not valid:
            return merge(len(tasks), errors, [])
        start = now()
        predictions = self.model.predict([t.text for t in valid])
        end = now()
        results = []
        for task, pred in zip(valid, predictions, strict=True):
            tokens = len(task.text.split())
            step = priced_step(
                self.name,
                self.model.name,
                self.prices,
                tokens,
                start_s=start,
                end_s=end,
                error=pred.error,
                kind="classifier",
            )
            if not pred.ok:
                results.append(Result(task.id, None, 0.0, [step], end - start, pred.error))
                continue
            probabilities = scale(pred.probabilities, self.temperature)
            confidence = classifier_confidence(probabilities, self.measure)
            intent, department = self.route(pred.label)
            if department == UNASSIGNED:
                confidence = 0.0  # out of scope: any cascade above this router escalates it
            low = confidence < self.threshold
            escalate = low or department == UNASSIGNED
            step.output, step.confidence = department, confidence
            step.decision = (
                f"escalate: {confidence:.2f} < {self.threshold:.2f}"
                if low
                else f"escalate: {intent!r} is in no department"
                if escalate
                else f"accept: {confidence:.2f} >= {self.threshold:.2f}"
            )
            output = {"intent": intent, "department": department, "escalate": escalate}
            meta = {**task.meta, "probabilities": probabilities}
            results.append(Result(task.id, output, confidence, [step], end - start, meta=meta))
        return merge(len(tasks), errors, results)

    # -------------------------------------------------------------------------- calibration
    def calibrate(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        target_share: float | None = None,
        target_accuracy: float | None = None,
    ) -> dict[str, float | None]:
        """Fit the temperature on labelled tickets (minimum negative log-likelihood); with
        ``target_share``, also set the threshold so about that share of them escalates; with
        ``target_accuracy``, the lowest threshold at which the tickets it accepts reach that
        department-level accuracy on this sample (none reaching it: threshold 1).

        ``labels`` are intents, or departments for a department-level model. Returns the fitted
        values with the log-likelihood and expected calibration error before and after.
        """
        if target_share is not None and target_accuracy is not None:
            raise ValueError("pass at most one of target_share and target_accuracy")
        if len(texts) != len(labels) or not texts:
            counts = f"{len(texts)} texts, {len(labels)} labels"
            raise ValueError(f"calibrate needs one label per text and at least one ({counts})")
        predictions = self.model.predict(list(texts))
        pairs = [(p.probabilities, y) for p, y in zip(predictions, labels, strict=True) if p.ok]
        unknown = sorted({y for _, y in pairs} - set(self.model.labels))
        if unknown:
            raise ValueError(f"labels the model does not know: {unknown[:10]}")
        grid = [2 ** (k / 8) for k in range(-24, 25)]  # 0.125 .. 8, log-spaced
        temperature = min(grid, key=lambda t: negative_log_likelihood(pairs, t))
        report = {
            "temperature": temperature,
            "nll_before": negative_log_likelihood(pairs, 1.0),
            "nll_after": negative_log_likelihood(pairs, temperature),
            "ece_before": calibration_error(pairs, 1.0),
            "ece_after": calibration_error(pairs, temperature),
        }
        self.temperature = temperature
        if target_share is not None:
            if not 0.0 <= target_share <= 1.0:
                raise ValueError(f"target_share must be in [0, 1], got {target_share}")
            scores = sorted(
                classifier_confidence(scale(p, temperature), self.measure) for p, _ in pairs
            )
            cut = round(target_share * len(scores))
            self.threshold = 0.0 if cut == 0 else midpoint(scores, cut)
            report["threshold"] = self.threshold
        accepted: dict[str, float | None] = {}
        if target_accuracy is not None:
            if not 0.0 < target_accuracy <= 1.0:
                raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
            accepted = self._threshold_for_accuracy(pairs, target_accuracy)
            report["threshold"] = self.threshold
        return {k: round(v, 4) for k, v in report.items()} | accepted

    def _threshold_for_accuracy(
        self, pairs: Sequence[tuple[Mapping[str, float], str]], target: float
    ) -> dict[str, float | None]:
        """Set the lowest threshold whose accepted tickets reach ``target``; what it accepts."""
        scored = []  # (confidence as run_batch computes it, department right?)
        for probabilities, label in pairs:
            scaled = scale(probabilities, self.temperature)
            _, department = self.route(max(scaled, key=scaled.__getitem__))
            confidence = classifier_confidence(scaled, self.measure)
            if department == UNASSIGNED:
                confidence = 0.0
            scored.append((confidence, department == self.route(label)[1]))
        scored.sort()
        right_from = [0] * (len(scored) + 1)  # right answers among scored[cut:]
        for i in range(len(scored) - 1, -1, -1):
            right_from[i] = right_from[i + 1] + scored[i][1]
        cut = next(
            (c for c in range(len(scored)) if right_from[c] / (len(scored) - c) >= target),
            len(scored),
        )
        scores = [c for c, _ in scored]
        self.threshold = 0.0 if cut == 0 else midpoint(scores, cut)
        kept = len(scored) - cut
        return {
            "accepted_share": round(kept / len(scored), 4),
            "accepted_accuracy": round(right_from[cut] / kept, 4) if kept else None,
            "accuracy": round(right_from[0] / len(scored), 4),
        }


def scale(probabilities: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Softmax(logits / T) from probabilities alone: p_i^(1/T), renormalised."""
    if temperature == 1.0:
        return dict(probabilities)
    powered = {k: max(p, 1e-12) ** (1.0 / temperature) for k, p in probabilities.items()}
    total = sum(powered.values())
    return {k: v / total for k, v in powered.items()}


def negative_log_likelihood(pairs: Sequence[tuple[Mapping[str, float], str]], t: float) -> float:
    return -sum(math.log(max(scale(p, t).get(y, 0.0), 1e-12)) for p, y in pairs) / len(pairs)


def calibration_error(
    pairs: Sequence[tuple[Mapping[str, float], str]], t: float, bins: int = 10
) -> float:
    """Expected calibration error: |accuracy - confidence| per confidence bin, weighted."""
    buckets: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for p, y in pairs:
        scaled = scale(p, t)
        label = max(scaled, key=scaled.__getitem__)
        buckets[min(int(scaled[label] * bins), bins - 1)].append((scaled[label], label == y))
    return sum(
        abs(sum(c for c, _ in b) / len(b) - sum(ok for _, ok in b) / len(b)) * len(b)
        for b in buckets
        if b
    ) / len(pairs)


def midpoint(sorted_scores: Sequence[float], cut: int) -> float:
    """A threshold between two observed scores, so float noise cannot flip a ticket."""
    if cut >= len(sorted_scores):
        return 1.0
    return (sorted_scores[cut - 1] + sorted_scores[cut]) / 2

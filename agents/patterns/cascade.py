"""Cascade (conditional activation): the small agent answers; below a confidence threshold the
large agent is called as well and its answer wins.

``calibrate`` sets the threshold from a labelled sample, either to a target share of tasks sent
to the large agent (as RouteLLM calibrates routers) or to the lowest share that reaches a
target accuracy.

No confidence available (``None``, a backend without token probabilities): the small agent's
answer is accepted as final, as it is in ``calibrate`` (such a task is never escalated; there is
no signal to escalate on). The large agent's answer is always final, whatever its confidence.

One shape per cascade: when the small agent answers with a dict (a router's
``{"intent", "department", ...}``) and the large one with a bare answer, ``answer_field`` maps
the large agent's answer onto the small agent's fields, so every Result has the same keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from slm_agents.agent import Agent, merge, split_valid
from slm_agents.patterns.base import chain, decision
from slm_agents.result import Result, Task, shown


class Cascade(Agent):
    """``small`` answers; tasks below ``threshold`` (or where it failed) go to ``large`` too.

    ``answer_field``: an escalated task keeps the small agent's dict output with this field set
    to the large agent's answer (its ``answer_field`` when the answer is a dict itself).
    """

    def __init__(
        self,
        small: Agent,
        large: Agent,
        *,
        threshold: float = 0.5,
        name: str = "cascade",
        answer_field: str | None = None,
    ):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.small, self.large, self.threshold, self.name = small, large, threshold, name
        self.answer_field = answer_field

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        first = self.small.run_batch(valid) if valid else []
        escalate = [i for i, r in enumerate(first) if not self._accepts(r)]
        out = list(first)
        for i in range(len(first)):
            if i not in escalate:
                why = (
                    "accept: no confidence available"
                    if first[i].confidence is None
                    else f"accept: {first[i].confidence:.2f} >= {self.threshold:.2f}"
                )
                out[i] = chain(first[i], decision(self.name, why, first[i].confidence))
        if escalate:
            decided = {  # stamped now, before the large agent runs, so traces read in order
                i: decision(
                    self.name,
                    f"escalate: {first[i].error}"
                    if not first[i].ok
                    else f"escalate: {shown(first[i].confidence)} < {self.threshold:.2f}",
                    first[i].confidence,
                )
                for i in escalate
            }
            second = self.large.run_batch([valid[i] for i in escalate])
            for i, result in zip(escalate, second, strict=True):
                out[i] = chain(first[i], decided[i], then=self._shaped(first[i], result))
        return merge(len(tasks), errors, out)

    def _accepts(self, small: Result) -> bool:
        """The small agent's answer is final: it succeeded, and it is confident enough or no
        confidence is available."""
        return small.ok and (small.confidence is None or small.confidence >= self.threshold)

    def _shaped(self, small: Result, large: Result) -> Result:
        """``large`` with its answer put into ``small``'s fields (see ``answer_field``)."""
        if self.answer_field is None or not large.ok or not isinstance(small.output, dict):
            return large
        answer = large.output
        if isinstance(answer, dict):
            answer = answer.get(self.answer_field)
        return replace(large, output={**small.output, self.answer_field: answer})

    def calibrate(
        self,
        tasks: Sequence[str | Task],
        labels: Sequence[Any],
        *,
        target_share: float | None = None,
        target_accuracy: float | None = None,
        correct: Callable[[Any, Any], bool] = lambda output, label: output == label,
    ) -> dict[str, float]:
        """Run both agents on a labelled sample and set ``threshold``; returns the curve point.

        A failed small answer counts as confidence 0 (always escalated), one with no confidence
        available as 1 (never escalated), as ``run_batch`` treats them.
        """
        small = self.small.run_batch(tasks)
        large = self.large.run_batch(tasks)
        conf = [(1.0 if r.confidence is None else r.confidence) if r.ok else 0.0 for r in small]
        small_ok = [r.ok and correct(r.output, y) for r, y in zip(small, labels, strict=True)]
        large_ok = [r.ok and correct(r.output, y) for r, y in zip(large, labels, strict=True)]
        self.threshold = calibrate_threshold(
            conf, small_ok, large_ok, target_share=target_share, target_accuracy=target_accuracy
        )
        return evaluate_threshold(conf, small_ok, large_ok, self.threshold)


def evaluate_threshold(
    conf: Sequence[float], small_ok: Sequence[bool], large_ok: Sequence[bool], threshold: float
) -> dict[str, float]:
    """Accuracy and share escalated if the cascade used ``threshold`` on this sample."""
    up = [c < threshold for c in conf]
    hits = [lg if u else sm for u, sm, lg in zip(up, small_ok, large_ok, strict=True)]
    n = max(len(conf), 1)
    return {"threshold": threshold, "accuracy": sum(hits) / n, "escalated": sum(up) / n}


def calibrate_threshold(
    conf: Sequence[float],
    small_ok: Sequence[bool],
    large_ok: Sequence[bool],
    *,
    target_share: float | None = None,
    target_accuracy: float | None = None,
) -> float:
    """The threshold that sends ``target_share`` of tasks up, or the lowest-share one that
    reaches ``target_accuracy`` (the highest accuracy, if none reaches it)."""
    if (target_share is None) == (target_accuracy is None):
        raise ValueError("pass exactly one of target_share or target_accuracy")
    if not conf:
        raise ValueError("calibration needs at least one labelled task")
    # Midpoints between neighbouring observed confidences: a threshold never sits exactly on a
    # sample's confidence, where a last-digit float difference would flip that sample.
    levels = sorted(set(conf) | {0.0, 1.0})
    candidates = [0.0, *((a + b) / 2 for a, b in itertools.pairwise(levels)), 1.0]
    points = [evaluate_threshold(conf, small_ok, large_ok, t) for t in candidates]
    if target_share is not None:
        if not 0.0 <= target_share <= 1.0:
            raise ValueError(f"target_share must be in [0, 1], got {target_share!r}")
        within = [p for p in points if p["escalated"] <= target_share]
        return max(within, key=lambda p: (p["escalated"], p["accuracy"]))["threshold"]
    reached = [p for p in points if p["accuracy"] >= target_accuracy]
    if reached:
        return min(reached, key=lambda p: (p["escalated"], -p["accuracy"]))["threshold"]
    return max(points, key=lambda p: (p["accuracy"], -p["escalated"]))["threshold"]

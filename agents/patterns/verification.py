"""ParallelVerify: the fast agent drafts while the verifier answers the same task concurrently;
then the verifier's answer accepts, corrects or rejects the draft.

Both run at once (``submit``), so the latency is that of the slower one, not their sum; each
Result records both (``meta["sequential_latency_s"]`` is what running them in turn would cost).
The ``judge`` decides: by default equal outputs accept the draft, a confident verifier
corrects it, an unsure one rejects both (an error Result that says so). A verifier with no
confidence available (None) counts as sure only when ``min_verifier_confidence`` is 0: nothing
shows that it meets a higher bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from slm_agents.agent import Agent, merge, split_valid
from slm_agents.patterns.base import chain, decision
from slm_agents.result import Result, Task

Verdict = str  # "accept", "correct" or "reject"


def same_output(draft: Any, verified: Any) -> bool:
    return " ".join(str(draft).split()).casefold() == " ".join(str(verified).split()).casefold()


class ParallelVerify(Agent):
    def __init__(
        self,
        drafter: Agent,
        verifier: Agent,
        *,
        agree: Callable[[Any, Any], bool] = same_output,
        min_verifier_confidence: float = 0.0,
        name: str = "verify",
    ):
        self.drafter, self.verifier, self.agree = drafter, verifier, agree
        self.min_verifier_confidence, self.name = min_verifier_confidence, name

    def judge(self, draft: Result, check: Result) -> Verdict:
        if check.ok and draft.ok and self.agree(draft.output, check.output):
            return "accept"
        if check.ok and self._sure(check.confidence):
            return "correct"
        return "reject"

    def _sure(self, confidence: float | None) -> bool:
        if confidence is None:  # no confidence available: meets only a bar of 0
            return self.min_verifier_confidence <= 0.0
        return confidence >= self.min_verifier_confidence

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        if not valid:
            return merge(len(tasks), errors, [])
        drafting, checking = self.drafter.submit(valid), self.verifier.submit(valid)
        drafts, checks = drafting.result(), checking.result()
        out = []
        for draft, check in zip(drafts, checks, strict=True):
            verdict = self.judge(draft, check)
            step = decision(self.name, f"{verdict}: draft {draft.output!r}", check.confidence)
            chosen = draft if verdict == "accept" else check
            result = replace(
                chain(draft, *check.path, step),  # path: draft, verifier, decision
                output=chosen.output,
                confidence=chosen.confidence,
                error=chosen.error,
            )
            if verdict == "reject":
                result.output = None
                result.error = f"verifier rejected the draft: {check.error or 'verifier unsure'}"
            result.meta["sequential_latency_s"] = draft.latency_s + check.latency_s
            result.meta["verdict"] = verdict
            out.append(result)
        return merge(len(tasks), errors, out)

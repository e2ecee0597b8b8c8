"""HumanReview: the tier above the SLM when no LLM tier is configured is a person.

A support desk without an LLM endpoint still must not guess on the tickets its router is unsure
of. This agent is the queue in front of a human team: each task it gets is appended to a JSONL
queue file (when one is given) and answered with ``{"review": "queued"}`` on a step of kind
``review``, so the job counts it as sent to review, never as an automatic answer (a cascade's
``answer_field`` leaves the router's field empty for it). It costs no tokens; the
people's time is not in the price table.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from slm_agents.agent import Agent, merge, split_valid
from slm_agents.result import Result, Step, Task, now

QUEUED = "queued"


class HumanReview(Agent):
    """Queue each task for a person; the answer says it is queued (confidence 0)."""

    def __init__(self, name: str = "review", queue_file: str | Path | None = None):
        self.name = name
        self.queue_file = Path(queue_file) if queue_file else None
        self._lock = threading.Lock()

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        start = now()
        if self.queue_file is not None and valid:
            self._append(valid)
        end = now()
        results = []
        for task in valid:
            output = {"review": QUEUED}
            step = Step(self.name, output, 0.0, start_s=start, end_s=end, kind="review",
                        decision="queued for human review")  # fmt: skip
            results.append(Result(task.id, output, 0.0, [step], end - start, meta=dict(task.meta)))
        return merge(len(tasks), errors, results)

    def _append(self, tasks: list[Task]) -> None:
        queued_at = datetime.now(UTC).isoformat(timespec="seconds")
        lines = "".join(
            json.dumps({"id": t.id, "text": t.text, "queued_at": queued_at}, ensure_ascii=False)
            + "\n"
            for t in tasks
        )
        with self._lock:
            self.queue_file.parent.mkdir(parents=True, exist_ok=True)
            with self.queue_file.open("a", encoding="utf-8") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())

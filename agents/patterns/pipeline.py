"""Pipeline: stages in sequence, each fed by the one before; any stage may stop the run.

Typical use: an SLM drafts or filters, the LLM finishes or explains. A :class:`Stage` says how
to build its input from the task and the previous Result (default: the previous output as
text) and when to stop (default: never; an error always stops that task).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slm_agents.agent import Agent, merge, split_valid
from slm_agents.patterns.base import chain, decision
from slm_agents.result import Result, Task


def previous_output(task: Task, previous: Result) -> str:
    return str(previous.output)


@dataclass
class Stage:
    agent: Agent
    render: Callable[[Task, Result], str] = previous_output  # input for this stage
    stop: Callable[[Result], bool] | None = None  # True: this stage's Result is final


class Pipeline(Agent):
    def __init__(self, stages: Sequence[Agent | Stage], *, name: str = "pipeline"):
        if not stages:
            raise ValueError("Pipeline needs at least one stage")
        self.stages = [s if isinstance(s, Stage) else Stage(s) for s in stages]
        self.name = name

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        done: list[Result | None] = [None] * len(valid)
        current: dict[int, Result] = {}
        for number, stage in enumerate(self.stages):
            live = [i for i in range(len(valid)) if done[i] is None]
            if not live:
                break
            inputs = [
                valid[i] if number == 0 else self._next_task(valid[i], stage, current[i])
                for i in live
            ]
            for i, result in zip(live, stage.agent.run_batch(inputs), strict=True):
                joined = result if number == 0 else chain(current[i], then=result)
                current[i] = joined
                last = number == len(self.stages) - 1
                if not result.ok:
                    done[i] = joined
                elif stage.stop is not None and stage.stop(result):
                    why = f"stop after {stage.agent.name}"
                    done[i] = chain(joined, decision(self.name, why, result.confidence))
                elif last:
                    done[i] = joined
        return merge(len(tasks), errors, done)  # type: ignore[arg-type]

    @staticmethod
    def _next_task(task: Task, stage: Stage, previous: Result) -> Task:
        return Task(text=stage.render(task, previous), id=task.id, meta=task.meta)

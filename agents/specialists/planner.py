"""Planner: the LLM tier splits a multi-part request into specialist calls and answers.

Why: a customer email can hold a billing question, a receipt to file and a failing code
snippet at once. No single specialist handles that; the planner decides which ones to call with
which part of the text, runs them, and writes one answer from their results.

How:

1. **Plan** (one LLM call per request, batched): JSON-schema-constrained decoding where each
   step's ``agent`` is an ``enum`` of the known specialists, so every generated plan parses and
   names only real specialists (schema-valid by construction). At most ``max_steps`` steps.
2. **Run**: the steps of the whole batch are grouped by specialist, so each specialist gets one
   batched call. A specialist's error stays in that step's entry; the other steps go on.
3. **Compose** (one LLM call per request, batched): the request and the specialists' outputs in,
   a short answer out. ``compose=False`` skips it (the answer is then the steps' outputs).

Plans from elsewhere (a user, another model) go through :meth:`Planner.run_plans`; a step naming
an unknown specialist makes that request an error Result that names it, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from slm_agents.agent import Agent, LLMAgent, merge, split_valid
from slm_agents.models.base import TextGenerator
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.privacy import excerpt
from slm_agents.result import Result, Task, weakest

PLAN_PROMPT = """Split the request below into calls to these specialists:
{menu}

Answer with a JSON plan: a list of steps, each naming one specialist and the part of the
request it should handle (copy that part of the text).

Request:
{text}"""
COMPOSE_PROMPT = """Request:
{text}

What the specialists found:
{findings}

Write a short, helpful answer to the request using what they found."""


class PlanError(ValueError):
    """A plan that cannot run: not a list of steps, or a step naming an unknown specialist."""


def plan_schema(names: Sequence[str], max_steps: int = 4, max_input: int = 800) -> dict:
    """The JSON schema every generated plan follows; ``agent`` can only be a known name."""
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "type": "object",
                    "properties": {
                        "agent": {"enum": list(names)},
                        "input": {"type": "string", "minLength": 1, "maxLength": max_input},
                    },
                    "required": ["agent", "input"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def check_plan(plan: Any, known: Sequence[str]) -> list[dict[str, str]]:
    """The plan's steps, or a PlanError saying what is wrong with it."""
    steps = plan.get("steps") if isinstance(plan, dict) else plan
    if not isinstance(steps, list) or not steps:
        raise PlanError(f"a plan is a non-empty list of steps, got {excerpt(json.dumps(plan))}")
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, dict) or not isinstance(step.get("agent"), str):
            raise PlanError(f"plan step {number} needs an 'agent' name, got {step!r}")
        if step["agent"] not in known:
            raise PlanError(
                f"plan step {number} names unknown specialist {step['agent']!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        if not isinstance(step.get("input", ""), str):
            raise PlanError(f"plan step {number}: 'input' must be text")
    return [{"agent": s["agent"], "input": s.get("input") or ""} for s in steps]


class Planner(Agent):
    """Request -> ``{"plan", "steps", "answer"}``: plan, run the specialists, compose.

    ``model``: the LLM tier (a ``CausalLM``, or any ``TextGenerator`` that honours
    ``json_schema``). ``specialists``: name -> Agent (a ``Team`` works).
    ``descriptions``: name -> one line on what each does, shown to the model (default: the first
    line of the agent's docstring).
    """

    def __init__(
        self,
        model: TextGenerator,
        specialists: Mapping[str, Agent],
        *,
        descriptions: Mapping[str, str] | None = None,
        name: str = "planner",
        max_steps: int = 4,
        compose: bool = True,
        max_new_tokens: int = 256,
        answer_tokens: int = 96,
        prices: PriceTable = DEFAULT_TABLE,
    ):
        if not specialists:
            raise ValueError(f"{name}: needs at least one specialist")
        if max_steps < 1:
            raise ValueError(f"{name}: max_steps must be >= 1, got {max_steps}")
        self.name, self.specialists, self.compose = name, dict(specialists), compose
        descriptions = dict(descriptions or {})
        menu = "\n".join(
            f"- {n}: {descriptions.get(n) or _first_line(agent)}"
            for n, agent in self.specialists.items()
        )
        self.planner = LLMAgent(
            name,
            model,
            prompt=PLAN_PROMPT.replace("{menu}", menu.replace("{", "{{").replace("}", "}}")),
            json_schema=plan_schema(list(self.specialists), max_steps),
            max_new_tokens=max_new_tokens,
            prices=prices,
        )
        self.composer = LLMAgent(
            f"{name}.compose", model, prompt=COMPOSE_PROMPT, max_new_tokens=answer_tokens,
            prices=prices,
        )  # fmt: skip

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        if not valid:
            return merge(len(tasks), errors, [])
        planned = self.planner.run_batch(valid)
        plans = [r.output if r.ok else None for r in planned]
        results = self._execute(valid, plans, planned)
        return merge(len(tasks), errors, results)

    def run_plans(self, tasks: Sequence[str | Task], plans: Sequence[Any]) -> list[Result]:
        """Run given plans (one per task) without the planning call; bad plans become errors."""
        if len(tasks) != len(plans):
            raise ValueError(f"{len(plans)} plans for {len(tasks)} tasks")
        valid, errors = split_valid(tasks, self.name)
        kept = [plans[i] for i in range(len(tasks)) if i not in errors]
        return merge(len(tasks), errors, self._execute(valid, kept, None))

    # ------------------------------------------------------------------------------ internals
    def _execute(
        self, tasks: list[Task], plans: list[Any], planned: list[Result] | None
    ) -> list[Result]:
        steps: list[list[dict[str, Any]] | None] = []
        failures: dict[int, str] = {}
        for i, plan in enumerate(plans):
            if planned is not None and not planned[i].ok:
                failures[i] = f"planning failed: {planned[i].error}"
                steps.append(None)
                continue
            try:
                steps.append(check_plan(plan, list(self.specialists)))
            except PlanError as exc:
                failures[i] = str(exc)
                steps.append(None)
        outcomes = self._run_specialists(tasks, steps)
        composed = self._compose(tasks, steps, outcomes)
        results = []
        for i, task in enumerate(tasks):
            path = list(planned[i].path) if planned is not None else []
            if i in failures:
                results.append(Result(task.id, None, 0.0, path, _span(path), failures[i]))
                continue
            entries = []
            for step, result in zip(steps[i] or [], outcomes[i], strict=True):
                path.extend(result.path)
                entries.append({**step, "output": result.output, "error": result.error})
            answer = None
            if composed.get(i) is not None:
                path.extend(composed[i].path)
                answer = composed[i].output
            confidences = [r.confidence for r in outcomes[i]]
            if planned is not None:
                confidences.append(planned[i].confidence)
            failed = [e for e in entries if e["error"]]
            error = "every specialist step failed" if len(failed) == len(entries) else None
            output = {"plan": steps[i], "steps": entries, "answer": answer}
            results.append(
                Result(
                    task.id, output, weakest(confidences), path, _span(path), error, meta=task.meta
                )
            )
        return results

    def _run_specialists(
        self, tasks: list[Task], steps: list[list[dict[str, Any]] | None]
    ) -> list[list[Result]]:
        """One batched call per specialist over every step that names it."""
        calls: dict[str, list[tuple[int, int, Task]]] = {}
        for i, plan in enumerate(steps):
            for j, step in enumerate(plan or []):
                text = step["input"].strip() or tasks[i].text
                sub = Task(text, id=f"{tasks[i].id}.{j + 1}", meta=dict(tasks[i].meta))
                calls.setdefault(step["agent"], []).append((i, j, sub))
        outcomes: list[list[Result | None]] = [[None] * len(plan or []) for plan in steps]
        for agent, items in calls.items():
            for (i, j, _), result in zip(
                items, self.specialists[agent].run_batch([t for _, _, t in items]), strict=True
            ):
                outcomes[i][j] = result
        return outcomes  # type: ignore[return-value]

    def _compose(
        self,
        tasks: list[Task],
        steps: list[list[dict[str, Any]] | None],
        outcomes: list[list[Result]],
    ) -> dict[int, Result]:
        if not self.compose:
            return {}
        wanted = [i for i, plan in enumerate(steps) if plan]
        prompts = []
        for i in wanted:
            findings = "\n".join(
                f"- {step['agent']}: "
                + (f"error: {r.error}" if r.error else json.dumps(r.output, default=str)[:600])
                for step, r in zip(steps[i] or [], outcomes[i], strict=True)
            )
            prompts.append(Task(tasks[i].text, id=tasks[i].id, meta={"findings": findings}))
        return dict(zip(wanted, self.composer.run_batch(prompts), strict=True))


def _first_line(agent: Agent) -> str:
    doc = (type(agent).__doc__ or type(agent).__name__).strip()
    return doc.splitlines()[0]


def _span(path: list) -> float:
    return max((s.end_s for s in path), default=0.0) - min((s.start_s for s in path), default=0.0)

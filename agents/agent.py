"""An Agent is a role: a model, a prompt or schema, and a confidence. Patterns are Agents too.

Every agent answers ``run_batch(tasks) -> list[Result]`` (one Result per task, in order);
``run``, ``submit`` (a Future, for concurrency) and the async ``arun``/``arun_batch`` derive
from it. The same API holds for an agent in this process and for one hosted by Ray
(``slm_agents.runtime.RayAgent``), so patterns never care where their agents live.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slm_agents.models.base import AdapterHost, Messages, TextClassifier, TextGenerator
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.result import Result, Step, Task, now


class Agent(ABC):
    """Subclasses implement ``run_batch``; everything else comes from it."""

    name: str = "agent"
    _executor: ThreadPoolExecutor | None = None

    @abstractmethod
    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        """One Result per task, in order; bad tasks get error Results, the rest still run."""

    def run(self, task: str | Task) -> Result:
        return self.run_batch([task])[0]

    def submit(self, tasks: Sequence[str | Task]) -> Future[list[Result]]:
        """Start ``run_batch`` without waiting (one worker thread per agent: calls queue up)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return self._executor.submit(self.run_batch, list(tasks))

    async def arun_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        return await asyncio.wrap_future(self.submit(tasks))

    async def arun(self, task: str | Task) -> Result:
        return (await self.arun_batch([task]))[0]


def failed(task: Task, agent: str, message: str) -> Result:
    """An error Result for one task, with the step that failed on its path."""
    t = now()
    step = Step(agent=agent, start_s=t, end_s=t, error=message)
    return Result(task.id, path=[step], error=message, meta=dict(task.meta))


def priced_step(
    agent: str,
    model: str,
    prices: PriceTable,
    prompt_tokens: int,
    completion_tokens: int = 0,
    **fields: Any,
) -> Step:
    """The Step of one model call, its cost from the price table: every agent prices alike."""
    return Step(
        agent,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=prices.cost(model, prompt_tokens, completion_tokens),
        **fields,
    )


def llm_step(agent: str, model: str, prices: PriceTable, usage: Any, **fields: Any) -> Step:
    """The priced Step of one generation (``usage``: its ``Usage``)."""
    return priced_step(
        agent, model, prices, usage.prompt_tokens, usage.completion_tokens, kind="llm", **fields
    )


def redaction_steps(agent: str, gen: Any, start: float) -> list[Step]:
    """A ``redact`` Step when the generation's prompt was redacted before it left (an external
    agent's): the kinds and how many of each, never the values."""
    report = getattr(gen, "redaction", None)
    if report is None:
        return []
    counts = report["counts"]
    found = ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items())) or "nothing found"
    return [
        Step(
            "redact",
            output={"kinds": dict(counts), "entities": sum(counts.values())},
            confidence=None,
            start_s=start,
            end_s=start + report["seconds"],
            decision=f"redacted what {agent} was sent: {found}",
        )
    ]


def split_valid(tasks: Sequence[str | Task], agent: str) -> tuple[list[Task], dict[int, Result]]:
    """Normalise tasks; empty or non-text ones become error Results keyed by position."""
    valid: list[Task] = []
    errors: dict[int, Result] = {}
    for i, raw in enumerate(tasks):
        task = raw if isinstance(raw, Task) else Task(text=raw) if isinstance(raw, str) else None
        if task is None:
            errors[i] = failed(
                Task(text=""), agent, f"task must be str or Task, got {type(raw).__name__}"
            )
        elif not isinstance(task.text, str) or not task.text.strip():
            errors[i] = failed(task, agent, "task text is empty")
        else:
            valid.append(task)
    return valid, errors


class PromptError(ValueError):
    """One task cannot fill the prompt template (a meta key it lacks, a malformed template)."""


def fill_prompt(template: str, task: Task, **values: Any) -> str:
    """``template.format`` over ``text``, the task's ``meta`` and ``values``; a task that cannot
    fill it raises :class:`PromptError` saying which key is missing or what is wrong."""
    meta = {k: v for k, v in task.meta.items() if isinstance(k, str)}
    fields = {**meta, **values, "text": task.text}
    try:
        return template.format(**fields)
    except KeyError as exc:
        key = exc.args[0] if exc.args else "?"
        raise PromptError(
            f"the prompt needs {{{key}}}, which task {task.id!r} does not have (its meta keys: "
            f"{sorted(task.meta) or 'none'}); a literal brace in a template is written {{{{ or }}}}"
        ) from exc
    except (IndexError, ValueError, AttributeError, TypeError) as exc:
        raise PromptError(
            f"the prompt template {template[:120]!r} is not a valid str.format template "
            f"({type(exc).__name__}: {exc}); write literal braces as {{{{ and }}}}"
        ) from exc


def prompts_for(
    tasks: Sequence[str | Task], agent: str, build: Callable[[Task], Any]
) -> tuple[list[Any], list[Task], dict[int, Result]]:
    """(prompts, the tasks they belong to, error Results by position): a task that is empty or
    cannot fill its prompt (``build`` raised :class:`PromptError`) fails alone."""
    valid, errors = split_valid(tasks, agent)
    positions = [i for i in range(len(tasks)) if i not in errors]
    prompts, ready = [], []
    for position, task in zip(positions, valid, strict=True):
        try:
            prompts.append(build(task))
            ready.append(task)
        except PromptError as exc:  # this task only: the rest of the batch still runs
            errors[position] = failed(task, agent, str(exc))
    return prompts, ready, errors


def merge(n: int, errors: dict[int, Result], ran: list[Result]) -> list[Result]:
    """Put error Results and the Results of the valid tasks back in input order."""
    it = iter(ran)
    return [errors[i] if i in errors else next(it) for i in range(n)]


def call_options(
    model: TextGenerator, *, json_schema: Any = None, regex: str | None = None, adapter: str | None
) -> dict[str, Any]:
    """The options an agent sets, and only those, so a backend needs to know only the options
    its agents use. A model that hosts adapters always gets ``adapter``: None selects the base
    model, whichever adapter an agent sharing the model used last."""
    options = {"json_schema": json_schema, "regex": regex}
    options = {key: value for key, value in options.items() if value is not None}
    if adapter is not None or isinstance(model, AdapterHost):
        options["adapter"] = adapter
    return options


class LLMAgent(Agent):
    """A causal LM in a role: a prompt template, optional system message, schema and adapter.

    ``prompt`` is a ``str.format`` template over the task (``{text}`` and any ``meta`` keys).
    The output is the generated text, or the parsed object when ``json_schema`` is set.
    """

    def __init__(
        self,
        name: str,
        model: TextGenerator,  # a CausalLM, or any backend with generate() and name
        *,
        prompt: str = "{text}",
        system: str | None = None,
        json_schema: Any = None,
        regex: str | None = None,
        max_new_tokens: int = 128,
        adapter: str | None = None,
        prices: PriceTable = DEFAULT_TABLE,
    ):
        if "{text}" not in prompt:
            raise ValueError(f"prompt of agent {name!r} must contain {{text}}, got {prompt!r}")
        self.name, self.model, self.prompt, self.system = name, model, prompt, system
        self.json_schema, self.regex, self.adapter = json_schema, regex, adapter
        self.max_new_tokens, self.prices = max_new_tokens, prices

    def _messages(self, task: Task) -> Messages:
        content = fill_prompt(self.prompt, task)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": content}]

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        prompts, ready, errors = prompts_for(tasks, self.name, self._messages)
        if not ready:
            return merge(len(tasks), errors, [])
        start = now()
        gens = self.model.generate(
            prompts,
            max_new_tokens=self.max_new_tokens,
            **call_options(
                self.model, json_schema=self.json_schema, regex=self.regex, adapter=self.adapter
            ),
        )
        end = now()
        results = []
        for task, gen in zip(ready, gens, strict=True):
            output = gen.parsed if gen.parsed is not None else gen.text
            step = llm_step(
                self.name,
                self.model.name,
                self.prices,
                gen.usage,
                output=output,
                confidence=gen.confidence,
                start_s=start,
                end_s=end,
                error=gen.error,
            )
            results.append(
                Result(
                    task.id,
                    output=None if gen.error else output,
                    confidence=gen.confidence,
                    path=[*redaction_steps(self.name, gen, start), step],
                    latency_s=end - start,
                    error=gen.error,
                    meta=dict(task.meta),
                )
            )
        return merge(len(tasks), errors, results)


CONFIDENCE_MEASURES = ("probability", "margin")


def classifier_confidence(probabilities: dict[str, float], measure: str) -> float:
    """``probability``: the top label's probability. ``margin``: top minus runner-up, which
    ranks "torn between two intents" as unsure even when both are likely (a better escalation
    signal for cascades over many similar labels)."""
    if measure not in CONFIDENCE_MEASURES:
        raise ValueError(f"confidence must be one of {CONFIDENCE_MEASURES}, got {measure!r}")
    top = sorted(probabilities.values(), reverse=True)[:2]
    if not top:
        return 0.0
    return top[0] - (top[1] if len(top) > 1 and measure == "margin" else 0.0)


class ClassifierAgent(Agent):
    """An encoder classifier in a role: the output is the label, confidence its probability
    (or, with ``confidence="margin"``, the lead of the top label over the runner-up)."""

    def __init__(
        self,
        name: str,
        model: TextClassifier,
        *,
        prices: PriceTable = DEFAULT_TABLE,
        confidence: str = "probability",
    ):
        if confidence not in CONFIDENCE_MEASURES:
            raise ValueError(
                f"agent {name!r}: confidence must be one of {CONFIDENCE_MEASURES}, "
                f"got {confidence!r}"
            )
        self.name, self.model, self.prices, self.measure = name, model, prices, confidence

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        if not valid:
            return merge(len(tasks), errors, [])
        start = now()
        preds = self.model.predict([t.text for t in valid])
        end = now()
        results = []
        for task, pred in zip(valid, preds, strict=True):
            tokens = len(task.text.split())  # word count: a cheap, stable proxy for input tokens
            confidence = pred.confidence
            if self.measure != "probability" and pred.ok:
                confidence = classifier_confidence(pred.probabilities, self.measure)
            step = priced_step(
                self.name,
                self.model.name,
                self.prices,
                tokens,
                output=pred.label,
                confidence=confidence,
                start_s=start,
                end_s=end,
                error=pred.error,
                kind="classifier",
            )
            meta = {**task.meta, "probabilities": pred.probabilities}
            results.append(
                Result(task.id, pred.label, confidence, [step], end - start, pred.error, meta=meta)
            )
        return merge(len(tasks), errors, results)


class FunctionAgent(Agent):
    """Plain Python as an agent (rules, lookups): ``fn(task) -> (output, confidence)``.

    An exception from ``fn`` becomes that task's error Result.
    """

    def __init__(self, name: str, fn: Callable[[Task], tuple[Any, float]]):
        self.name, self.fn = name, fn

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        results = []
        for task in valid:
            start = now()
            try:
                output, confidence = self.fn(task)
                error = None
            except Exception as exc:  # the rule failed on this task only
                output, confidence, error = None, 0.0, f"{type(exc).__name__}: {exc}"
            end = now()
            step = Step(self.name, output, confidence, start_s=start, end_s=end, error=error)
            results.append(
                Result(
                    task.id, output, confidence, [step], end - start, error, meta=dict(task.meta)
                )
            )
        return merge(len(tasks), errors, results)


__all__ = [
    "Agent",
    "ClassifierAgent",
    "FunctionAgent",
    "LLMAgent",
    "PromptError",
    "failed",
    "fill_prompt",
    "merge",
    "prompts_for",
    "split_valid",
]

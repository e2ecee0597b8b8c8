"""Coder: writes a function from a spec or docstring, tests it in the sandbox, repairs it.

A small model's first try at a function is often wrong, but the tests say exactly how, and
that error is cheap to feed back. So the Coder generates, runs the task's tests in
:func:`slm_agents.sandbox.run_tests` (a subprocess with a timeout, memory limit, output cap, temp
dir and no network; generated code never runs in this process), and for up to ``max_repairs``
rounds asks the model to fix the failing code given the error. Confidence comes from the tests.

This module is the loop. What is asked (chat and completion styles, repair requests,
:func:`humaneval_task`) is in ``code_prompts.py``; how a reply becomes the program tested
(:func:`code_from_reply`, :func:`assemble`) in ``code_extraction.py``. Both are re-exported here.

A task is HumanEval-shaped: ``Task.text`` is the prompt (signature and docstring, or a plain
spec), ``Task.meta["test"]`` the test code (``check(candidate)`` or module-level asserts) and
``Task.meta["entry_point"]`` the function's name (inferred from the prompt when absent).
The output is ``{"code", "passed", "attempts", "error"}``; every generation and every test run
is a Step.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slm_agents.agent import Agent, failed, llm_step, merge, redaction_steps, split_valid
from slm_agents.models.base import TextGenerator
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.result import Result, Step, Task, now
from slm_agents.sandbox import run_sandboxed, run_tests
from slm_agents.specialists.code_extraction import (
    assemble,
    code_from_reply,
    entry_point_of,
    is_function_prompt,
    program_from_reply,
)
from slm_agents.specialists.code_prompts import (
    COMPLETION_STOPS,
    STYLES,
    SYSTEM,
    chat_prefill,
    chat_repair,
    chat_request,
    completion_repair,
    humaneval_task,
)

_DEFAULT_LIMITS = {"timeout_s": 5.0, "memory_mb": 512}
_CHECK = re.compile(r"^def\s+check\s*\(", re.M)  # HumanEval tests: check(candidate)


@dataclass
class _Job:
    """One task's state across rounds."""

    task: Task
    test: str
    entry_point: str | None
    path: list[Step] = field(default_factory=list)
    code: str | None = None  # the last program tested (solution only, no tests)
    passed: bool = False
    attempts: int = 0
    error: str | None = None  # the last test (or extraction) error
    fatal: str | None = None  # the first generation failed: the Result is an error
    stderr: str = ""


class Coder(Agent):
    """Generate, test in the sandbox, repair from the error: pass@1 with a test-and-repair loop.

    Args:
        name: the agent's name; generation steps carry it, test runs ``<name>.tests``.
        model: a ``TextGenerator`` (``slm_agents.models.CausalLM``, or any backend with
            ``generate`` and ``name``), a bundled or local model name (loaded on first use;
            default the bundled SLM), or any ``Agent`` whose text output is the reply (an
            ``LLMAgent``, a ``RayAgent``, a ``Cascade``): the LLM tier swaps in here.
        max_repairs: repair rounds after the first attempt (0: plain pass@1).
        max_new_tokens: per generation.
        style: ``"chat"`` asks an instruction model for the function; ``"completion"`` has a
            base model continue the prompt's code (plain text, no chat template, stopping at
            the next top-level statement). Completion needs a model with ``generate`` and
            function prompts (signature and docstring).
        prefill: chat style, function prompt: start the model's reply with a code fence and
            the prompt itself, so it writes only the body (a 135M model asked for "the complete
            function" often rewrites the signature wrongly or drifts into prose). Only for a
            model with ``generate``; an Agent writes its whole reply.
        repair_temperature: sampling temperature of the repair rounds (the first attempt is
            greedy). A greedy repair of a small model mostly resubmits the same code; sampling,
            seeded by ``seed`` and the round, makes each round a new try informed by the error.
        repair_top_p: nucleus sampling of the repair rounds (0.95, the Codex paper's setting:
            a large vocabulary sampled whole draws many junk tokens).
        repair_feedback: show the test error (and, chat style, the failing code) in repair
            prompts. False resends the first prompt, so repair rounds are plain resampling:
            the ablation that tells whether the error helps.
        system: system message for a model with ``generate`` (an Agent brings its own).
        limits: keywords for :func:`slm_agents.sandbox.run_sandboxed` (default 5 s, 512 MB).
        workers: sandbox runs at once.
    """

    def __init__(
        self,
        name: str = "coder",
        model: TextGenerator | Agent | str | None = None,
        *,
        max_repairs: int = 2,
        max_new_tokens: int = 256,
        style: str = "chat",
        prefill: bool = True,
        repair_temperature: float = 0.7,
        repair_top_p: float = 0.95,
        repair_feedback: bool = True,
        seed: int = 0,
        system: str | None = SYSTEM,
        limits: Mapping[str, Any] | None = None,
        workers: int = 2,
        prices: PriceTable = DEFAULT_TABLE,
    ):
        if not isinstance(max_repairs, int) or max_repairs < 0:
            raise ValueError(f"max_repairs must be an int >= 0, got {max_repairs!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        allowed = set(inspect.signature(run_sandboxed).parameters) - {"code"}
        unknown = set(limits or {}) - allowed
        if unknown:
            raise ValueError(
                f"unknown sandbox limits {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if not (model is None or isinstance(model, (str, Agent, TextGenerator))):
            raise TypeError(
                f"model must be a TextGenerator (generate and name, e.g. a CausalLM), a model "
                f"name or an Agent, got {type(model).__name__}"
            )
        self.limits = {**_DEFAULT_LIMITS, **(limits or {})}
        for key in ("timeout_s", "memory_mb", "max_output_bytes", "max_processes", "max_file_mb"):
            if key in self.limits and not self.limits[key] > 0:
                raise ValueError(f"limits[{key!r}] must be > 0, got {self.limits[key]!r}")
        if repair_temperature < 0:
            raise ValueError(f"repair_temperature must be >= 0, got {repair_temperature!r}")
        if not 0 < repair_top_p <= 1:
            raise ValueError(f"repair_top_p must be in (0, 1], got {repair_top_p!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
        if style == "completion" and isinstance(model, Agent):
            raise ValueError(
                "style='completion' continues the prompt's text, which needs a model with "
                "generate (a CausalLM or its name); an Agent writes whole replies: use 'chat'"
            )
        self.style = style
        self.name, self._model, self.max_repairs = name, model, max_repairs
        self.max_new_tokens, self.system = max_new_tokens, system
        self.prefill, self.repair_temperature, self.seed = prefill, repair_temperature, seed
        self.repair_top_p, self.repair_feedback = repair_top_p, repair_feedback
        self.workers, self.prices = workers, prices

    @property
    def model(self) -> TextGenerator | Agent:
        """The model or agent that writes code; a name or None is loaded on first use."""
        if self._model is None or isinstance(self._model, str):
            from slm_agents.models import CausalLM

            self._model = CausalLM(self._model) if self._model else CausalLM()
        return self._model

    # ------------------------------------------------------------------ run
    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        jobs: list[_Job | Result] = [self._job(task) for task in valid]
        pending = [j for j in jobs if isinstance(j, _Job)]
        for round_ in range(self.max_repairs + 1):
            if not pending:
                break
            prompts = [(self._prompt(j, round_), self._prefill(j)) for j in pending]
            replies = self._generate(prompts, round_)
            last = round_ == self.max_repairs
            tested, uncoded = [], []
            for job, (text, steps, error) in zip(pending, replies, strict=True):
                job.path.extend(steps)
                if error is not None:  # the model failed: nothing new to test, stop here
                    job.fatal = error if job.attempts == 0 else None
                    continue
                job.attempts += 1
                program = self._program(job, text or "")
                if program is None:
                    self._no_code(job, last=last)
                    uncoded.append(job)
                else:
                    job.code = program
                    tested.append(job)
            self._test(tested, last=last)
            pending = [j for j in tested if not j.passed] + uncoded
        out = [j if isinstance(j, Result) else self._result(j) for j in jobs]
        return merge(len(tasks), errors, out)

    def _program(self, job: _Job, reply: str) -> str | None:
        """The program to test from a reply, or None when the reply holds no code."""
        completion = self.style == "completion"  # the reply continues the prompt's code
        return program_from_reply(job.task.text, reply, job.entry_point, completion=completion)

    def _job(self, task: Task) -> _Job | Result:
        """Validate one task's HumanEval fields; a bad one becomes its error Result."""
        test, entry_point = task.meta.get("test"), task.meta.get("entry_point")
        if not isinstance(test, str) or not test.strip():
            return failed(task, self.name, "task meta has no 'test': the test code is required")
        if entry_point is not None and (
            not isinstance(entry_point, str) or not entry_point.isidentifier()
        ):
            return failed(
                task, self.name, f"entry_point must be a Python identifier, got {entry_point!r}"
            )
        if self.style == "completion" and not is_function_prompt(task.text):
            return failed(
                task,
                self.name,
                "style='completion' needs a function prompt (a signature and docstring to "
                "continue); use style='chat' for a plain-text spec",
            )
        if entry_point is None and _CHECK.search(test):
            entry_point = entry_point_of(task.text)
            if entry_point is None:
                return failed(
                    task,
                    self.name,
                    "task meta has no 'entry_point' and the prompt defines no function for "
                    "check(candidate)",
                )
        return _Job(task, test, entry_point)

    def _prompt(self, job: _Job, round_: int) -> str:
        """The first request, or a repair request (``code_prompts``): the failing code and how
        it failed (chat), or the last error above the prompt (completion)."""
        prompt, entry_point = job.task.text, job.entry_point
        first = round_ == 0 or not self.repair_feedback
        if self.style == "completion":
            if first or job.error is None:
                return prompt
            return completion_repair(prompt, entry_point, job.error)
        if first:
            return chat_request(prompt, entry_point)
        return chat_repair(prompt, entry_point, job.code, job.error, job.stderr)

    def _prefill(self, job: _Job) -> str:
        """How the reply starts: the prompt's own code in a fence, when prefilling applies."""
        if not self.prefill or self.style == "completion" or isinstance(self.model, Agent):
            return ""
        return chat_prefill(job.task.text)

    def _generate(
        self, prompts: list[tuple[str, str]], round_: int
    ) -> list[tuple[str | None, list[Step], str | None]]:
        """One model call for all (prompt, prefill) pairs: (reply text, steps, error) each."""
        label = "generate" if round_ == 0 else f"repair {round_}"
        model = self.model
        if isinstance(model, Agent):
            results = model.run_batch([Task(text=p) for p, _ in prompts])
            out = []
            for r in results:
                steps = [*r.path] or [Step(self.name, r.output, error=r.error, kind="llm")]
                steps[-1].decision = steps[-1].decision or label
                text_ok = isinstance(r.output, str)
                error = r.error or (
                    None if text_ok else f"model agent returned {type(r.output).__name__}, not text"
                )
                out.append((r.output if text_ok else None, steps, error))
            return out
        completion = self.style == "completion"
        head = [{"role": "system", "content": self.system}] if self.system else []
        chats = [
            p
            if completion
            else [*head, {"role": "user", "content": p}]
            + ([{"role": "assistant", "content": pre}] if pre else [])
            for p, pre in prompts
        ]
        if round_ > 0 and self.repair_temperature > 0:  # a repair: sampled, seeded per round
            decoding = {
                "temperature": self.repair_temperature,
                "top_p": self.repair_top_p,
                "seed": self.seed + round_,
            }
        else:
            decoding = {"temperature": 0.0, "seed": None}
        if completion:
            decoding.update(chat=False, stop=COMPLETION_STOPS)
        start = now()
        gens = model.generate(chats, max_new_tokens=self.max_new_tokens, **decoding)
        end = now()
        name = model.name
        out = []
        for gen, (_, pre) in zip(gens, prompts, strict=True):
            text = pre + gen.text  # the reply as a whole, its prefilled start included
            step = llm_step(
                self.name,
                name,
                self.prices,
                gen.usage,
                output=text,
                confidence=gen.confidence,
                start_s=start,
                end_s=end,
                decision=label,
                error=gen.error,
            )
            steps = [*redaction_steps(self.name, gen, start), step]
            out.append((None if gen.error else text, steps, gen.error))
        return out

    def _test(self, jobs: list[_Job], *, last: bool) -> None:
        """Run each job's program with its tests in the sandbox; a Step per run."""

        def one(job: _Job) -> Step:
            start = now()
            check = job.entry_point if _CHECK.search(job.test) else None  # else bare asserts
            res = run_tests(job.code or "", job.test, check, **self.limits)
            end = now()
            job.passed, job.error, job.stderr = res.ok, res.error, res.stderr
            if res.ok:
                decision = "accept: tests passed"
            elif last:
                decision = f"give up after {job.attempts} attempts: {res.error}"
            else:
                decision = f"repair: {res.error}"
            output = {
                "passed": res.ok,
                "error": res.error,
                "killed_by": res.killed_by,
                "violation": res.violation,
                "duration_s": round(res.duration_s, 3),
            }
            return Step(
                f"{self.name}.tests",
                output,
                1.0 if res.ok else 0.0,
                start_s=start,
                end_s=end,
                decision=decision,
                error=res.error,
                kind="function",
            )

        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            steps = list(pool.map(one, jobs))
        for job, step in zip(jobs, steps, strict=True):
            job.path.append(step)

    def _no_code(self, job: _Job, *, last: bool) -> None:
        job.passed, job.stderr, job.code = False, "", None
        job.error = "NoCode: the reply contained no Python code"
        what = f"give up after {job.attempts} attempts" if last else "repair"
        t = now()
        job.path.append(
            Step(
                f"{self.name}.tests",
                {"passed": False, "error": job.error},
                start_s=t,
                end_s=t,
                decision=f"{what}: {job.error}",
                error=job.error,
            )
        )

    def _result(self, job: _Job) -> Result:
        meta = dict(job.task.meta)
        latency = max(s.end_s for s in job.path) - min(s.start_s for s in job.path)
        if job.fatal is not None:
            return Result(job.task.id, None, 0.0, job.path, latency, job.fatal, meta=meta)
        output = {
            "code": job.code,
            "passed": job.passed,
            "attempts": job.attempts,
            "error": None if job.passed else job.error,
        }
        return Result(job.task.id, output, float(job.passed), job.path, latency, meta=meta)


# assemble, code_from_reply and humaneval_task are re-exported: callers import them from here.
__all__ = ["COMPLETION_STOPS", "Coder", "assemble", "code_from_reply", "humaneval_task"]

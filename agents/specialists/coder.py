"""Coder: writes a function from a spec or docstring, tests it in the sandbox, repairs it.

A small model's first try at a function is often wrong, but the tests say exactly how, and
that error is cheap to feed back. So the Coder generates, runs the task's tests in
:func:`slm_agents.sandbox.run_tests` (a subprocess with a timeout, memory limit, output cap, temp
dir and no network; generated code never runs in this process), and for up to ``max_repairs``
rounds asks the model to fix the failing code given the error. Confidence comes from the tests.

Two prompt styles: ``"chat"`` (an instruction model asked for the function, the default) and
``"completion"`` (a base model continues the prompt's code, the way HumanEval was designed;
a repair puts the last error in a comment above the prompt).

A task is HumanEval-shaped: ``Task.text`` is the prompt (signature and docstring, or a plain
spec), ``Task.meta["test"]`` the test code (``check(candidate)`` or module-level asserts) and
``Task.meta["entry_point"]`` the function's name (inferred from the prompt when absent).
:func:`humaneval_task` builds one from a HumanEval problem. The output is
``{"code", "passed", "attempts", "error"}``; every generation and every test run is a Step.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slm_agents.agent import Agent, failed, llm_step, merge, split_valid
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.result import Result, Step, Task, now
from slm_agents.sandbox import run_sandboxed, run_tests

SYSTEM = "You are an expert Python programmer."
_FORMAT = "Reply with the complete function in one ```python code block."
_DEFAULT_LIMITS = {"timeout_s": 5.0, "memory_mb": 512}
_STDERR_TAIL = 800  # characters of the failing run's stderr shown to the model
# Where a completion stops: the function's body is done when top-level code starts (Codex paper).
COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
STYLES = ("chat", "completion")


def humaneval_task(problem: Mapping[str, Any]) -> Task:
    """A Task from one HumanEval problem (``prompt``, ``test``, ``entry_point``, ``task_id``)."""
    meta = {"test": problem.get("test"), "entry_point": problem.get("entry_point")}
    ids = {"id": str(problem["task_id"])} if problem.get("task_id") else {}
    return Task(text=problem.get("prompt", ""), meta=meta, **ids)


# --- from a model's reply to a program ------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_CODE_LINE = re.compile(r"^(async\s+def|def|class|import|from|@)\b")
_CHECK = re.compile(r"^def\s+check\s*\(", re.M)  # HumanEval tests: check(candidate)
_ANY_CODE = re.compile(r"^\s*(def|return|for|while|if|import|from|class)\b", re.M)


def _parses(code: str) -> bool:
    """Whether ``code`` compiles (to bytecode, never run: that only happens in the sandbox)."""
    try:
        compile(code, "<reply>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str | None) -> bool:
    """Whether ``code`` defines ``name`` (any top-level function when name is None)."""
    target = re.escape(name) if name else r"\w+"
    return re.search(rf"^(async\s+)?def\s+{target}\s*\(", code, re.M) is not None


def code_from_reply(reply: str, entry_point: str | None = None) -> str | None:
    """The code in a model's reply: a fenced block (the one defining ``entry_point`` first), or
    the reply itself with prose trimmed off; None when there is no code at all."""
    blocks = [
        m[2]
        for m in _FENCE.finditer(reply)
        if m[1].lower() in ("", "python", "py", "python3") and m[2].strip()
    ]
    if blocks:
        return next(
            (b for b in blocks if _defines(textwrap.dedent(b), entry_point)),
            next((b for b in blocks if _parses(textwrap.dedent(b))), blocks[0]),
        )
    if not reply.strip():
        return None
    if _parses(reply) or _parses(textwrap.dedent(reply)):
        return reply
    lines = reply.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_LINE.match(line)), None)
    if start is not None:  # prose before the code, maybe after it: cut it off
        for end in range(len(lines), start, -1):
            candidate = "\n".join(lines[start:end]) + "\n"
            if _parses(candidate):
                return candidate
    return reply if _ANY_CODE.search(reply) else None


def assemble(prompt: str, code: str, entry_point: str | None = None) -> str:
    """The program to test: the model's code joined with the prompt.

    A whole function goes after the prompt (whose imports and helpers it may need; its own
    definition replaces the prompt's stub). A bare body is indented under the prompt's
    signature. ``if __name__ == "__main__":`` blocks are dropped: the sandbox runs the program
    as ``__main__``, and demo code there (``input()``, prints) is not what is being tested.
    """
    head = prompt.rstrip() + "\n"
    stub = head if _parses(head) else head + "    pass\n"  # a signature without a docstring
    prompt_is_code = _is_function_prompt(prompt)
    dedented = textwrap.dedent(code).strip("\n") + "\n"
    whole = _defines(dedented, entry_point) or (_defines(dedented, None) and _parses(dedented))
    if not prompt_is_code:
        program = dedented
    elif whole:
        program = f"{stub}\n\n{dedented}"
    else:  # a body for the prompt's last function
        body = code.strip("\n") + "\n"
        if not body[:1].isspace():
            body = textwrap.indent(dedented, "    ")
        program = head + body
        if not _parses(program) and _parses(dedented):
            program = f"{stub}\n\n{dedented}"
    return _drop_main_block(program)


def _is_function_prompt(prompt: str) -> bool:
    """Whether the prompt is Python ending in a function to complete (HumanEval style)."""
    head = prompt.rstrip() + "\n"
    return _defines(prompt, None) and (_parses(head) or _parses(head + "    pass\n"))


def _drop_main_block(program: str) -> str:
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return program
    lines = program.splitlines(keepends=True)
    for node in reversed(tree.body):
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and getattr(test.left, "id", None) == "__name__":
            del lines[node.lineno - 1 : node.end_lineno]
    return "".join(lines)


def _entry_point_of(prompt: str) -> str | None:
    names = re.findall(r"^(?:async\s+)?def\s+(\w+)\s*\(", prompt, re.M)
    return names[-1] if names else None


# --- the agent ------------------------------------------------------------------------------


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
        model: a causal model with ``generate`` (``slm_agents.models.CausalLM``), its bundled or
            local name (loaded on first use; default the bundled SLM), or any ``Agent`` whose
            text output is the reply (an ``LLMAgent``, a ``RayAgent``, a ``Cascade``): the LLM
            tier swaps in here.
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
        model: Any = None,
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
        if not (model is None or isinstance(model, (str, Agent)) or hasattr(model, "generate")):
            raise TypeError(
                f"model must be a CausalLM (with generate), a model name or an Agent, got "
                f"{type(model).__name__}"
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
    def model(self) -> Any:
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
        if self.style == "completion":  # the reply continues the prompt's code
            return _drop_main_block(job.task.text + reply) if reply.strip() else None
        code = code_from_reply(reply, job.entry_point)
        return None if code is None else assemble(job.task.text, code, job.entry_point)

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
        if self.style == "completion" and not _is_function_prompt(task.text):
            return failed(
                task,
                self.name,
                "style='completion' needs a function prompt (a signature and docstring to "
                "continue); use style='chat' for a plain-text spec",
            )
        if entry_point is None and _CHECK.search(test):
            entry_point = _entry_point_of(task.text)
            if entry_point is None:
                return failed(
                    task,
                    self.name,
                    "task meta has no 'entry_point' and the prompt defines no function for "
                    "check(candidate)",
                )
        return _Job(task, test, entry_point)

    def _prompt(self, job: _Job, round_: int) -> str:
        """The first request, or a repair request: the failing code and how it failed."""
        if self.style == "completion":
            return self._completion_prompt(job, round_)
        spec = job.task.text.strip()
        if _is_function_prompt(job.task.text):
            ask = f"Complete this Python function:\n```python\n{job.task.text.rstrip()}\n```"
        else:
            named = f"\nName it `{job.entry_point}`." if job.entry_point else ""
            ask = f"Write a Python function for this spec:\n{spec}{named}"
        if round_ == 0 or not self.repair_feedback:
            return f"{ask}\n{_FORMAT}"
        if job.code is None:  # the last reply had no code: ask again, saying so
            return f"Your last reply had no Python code.\n\n{ask}\n{_FORMAT}"
        tail = job.stderr.strip()[-_STDERR_TAIL:]
        shown = f"\n\nError output:\n{tail}" if tail and tail != job.error else ""
        keep = f" and keep the name `{job.entry_point}`" if job.entry_point else ""
        context = "" if _is_function_prompt(job.task.text) else f"The spec:\n{spec}\n\n"
        return (
            f"{context}This Python code fails its tests.\n\n```python\n{job.code}```\n\n"
            f"Error: {job.error}{shown}\n\nFix it{keep}. {_FORMAT}"
        )

    def _completion_prompt(self, job: _Job, round_: int) -> str:
        """The prompt's code itself; for a repair, the last error as a comment above it.

        The failing code is not shown: a base model continues text, and given its previous
        body it copies it (seen with Gemma-3-270M: every repair resubmitted the same code).
        The error names the failing test (``assert candidate(3.5) == 0.5``), which is the
        information the next, sampled, try needs.
        """
        if round_ == 0 or job.error is None or not self.repair_feedback:
            return job.task.text
        name = job.entry_point or "this function"
        error = " ".join(job.error.split())[:_STDERR_TAIL]
        return f"# A previous version of {name} failed a test:\n#   {error}\n{job.task.text}"

    def _prefill(self, job: _Job) -> str:
        """How the reply starts: the prompt's own code in a fence, when prefilling applies."""
        if not self.prefill or self.style == "completion" or isinstance(self.model, Agent):
            return ""
        return (
            f"```python\n{job.task.text.rstrip()}\n" if _is_function_prompt(job.task.text) else ""
        )

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
        name = getattr(model, "name", None)
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
            out.append((None if gen.error else text, [step], gen.error))
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


__all__ = ["COMPLETION_STOPS", "Coder", "assemble", "code_from_reply", "humaneval_task"]

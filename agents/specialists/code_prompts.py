"""What the Coder asks: first requests and repair requests, in chat and completion style.

``"chat"``: an instruction model is asked for the function (the reply may be prefilled with the
prompt's own code, so the model writes only the body); a repair shows the failing code and the
test error. ``"completion"``: a base model continues the prompt's code as plain text, the way
HumanEval was designed; a repair puts the last error in a comment above the prompt. Also
:func:`humaneval_task`, the Task of one HumanEval problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slm_agents.result import Task
from slm_agents.specialists.code_extraction import is_function_prompt

SYSTEM = "You are an expert Python programmer."
FORMAT = "Reply with the complete function in one ```python code block."
STDERR_TAIL = 800  # characters of the failing run's stderr shown to the model
# Where a completion stops: the function's body is done when top-level code starts (Codex paper).
COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
STYLES = ("chat", "completion")


def humaneval_task(problem: Mapping[str, Any]) -> Task:
    """A Task from one HumanEval problem (``prompt``, ``test``, ``entry_point``, ``task_id``)."""
    meta = {"test": problem.get("test"), "entry_point": problem.get("entry_point")}
    ids = {"id": str(problem["task_id"])} if problem.get("task_id") else {}
    return Task(text=problem.get("prompt", ""), meta=meta, **ids)


def chat_request(prompt: str, entry_point: str | None) -> str:
    """The first chat request: complete the prompt's function, or write one for a spec."""
    if is_function_prompt(prompt):
        ask = f"Complete this Python function:\n```python\n{prompt.rstrip()}\n```"
    else:
        named = f"\nName it `{entry_point}`." if entry_point else ""
        ask = f"Write a Python function for this spec:\n{prompt.strip()}{named}"
    return f"{ask}\n{FORMAT}"


def chat_repair(
    prompt: str, entry_point: str | None, code: str | None, error: str | None, stderr: str
) -> str:
    """A chat repair request: the failing code and how it failed (``code`` None: the last reply
    had no code, so ask again, saying so)."""
    if code is None:
        return f"Your last reply had no Python code.\n\n{chat_request(prompt, entry_point)}"
    tail = stderr.strip()[-STDERR_TAIL:]
    shown = f"\n\nError output:\n{tail}" if tail and tail != error else ""
    keep = f" and keep the name `{entry_point}`" if entry_point else ""
    context = "" if is_function_prompt(prompt) else f"The spec:\n{prompt.strip()}\n\n"
    return (
        f"{context}This Python code fails its tests.\n\n```python\n{code}```\n\n"
        f"Error: {error}{shown}\n\nFix it{keep}. {FORMAT}"
    )


def chat_prefill(prompt: str) -> str:
    """How a chat reply starts: the prompt's own code in a fence (function prompts only)."""
    return f"```python\n{prompt.rstrip()}\n" if is_function_prompt(prompt) else ""


def completion_repair(prompt: str, entry_point: str | None, error: str) -> str:
    """The prompt's code with the last error as a comment above it.

    The failing code is not shown: a base model continues text, and given its previous body it
    copies it (seen with Gemma-3-270M: every repair resubmitted the same code). The error names
    the failing test (``assert candidate(3.5) == 0.5``), which is the information the next,
    sampled, try needs.
    """
    name = entry_point or "this function"
    error = " ".join(error.split())[:STDERR_TAIL]
    return f"# A previous version of {name} failed a test:\n#   {error}\n{prompt}"


__all__ = [
    "COMPLETION_STOPS",
    "FORMAT",
    "STYLES",
    "SYSTEM",
    "chat_prefill",
    "chat_repair",
    "chat_request",
    "completion_repair",
    "humaneval_task",
]

"""Coder: code from a reply, tests in the sandbox, repair from the error; real HumanEval problems.

Most tests script the model's replies (``Scripted``): a wrong first answer followed by a fix, or
an endless loop, cannot be had reliably from the real 135M model. The last test runs the real
bundled model on one problem, with bad tasks in the same batch.
"""

from __future__ import annotations

import json
import time

import pytest

from slm_agents.agent import FunctionAgent
from slm_agents.datasets import data_dir
from slm_agents.models import Generation, Usage
from slm_agents.result import Task
from slm_agents.sandbox import run_tests
from slm_agents.specialists import Coder
from slm_agents.specialists.coder import assemble, code_from_reply, humaneval_task

HUMANEVAL = data_dir() / "humaneval"


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    with open(HUMANEVAL / "problems.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    # by function name; two problems define an ``add``: HumanEval/53 (x + y) is the one here
    by_name = {row["entry_point"]: row for row in reversed(rows)}
    assert by_name["add"]["task_id"] == "HumanEval/53"
    return by_name


class Scripted:
    """A deterministic model: per function name, the replies it gives, in order."""

    name = "scripted"

    def __init__(self, replies: dict[str, list[str]]):
        self.replies = {name: list(texts) for name, texts in replies.items()}
        self.calls: list[list[str]] = []  # the user messages of each generate call
        self.chats: list[list] = []  # the whole chats of each call (a prefill comes last)
        self.options: list[dict] = []  # the decoding options of each call

    def generate(self, prompts, max_new_tokens=128, **options):
        """Like CausalLM: a reply continues a trailing assistant message (the prefill)."""
        users = [  # a completion prompt is plain text
            p
            if isinstance(p, str)
            else next(m["content"] for m in reversed(p) if m["role"] == "user")
            for p in prompts
        ]
        self.calls.append(users)
        self.chats.append(prompts)
        self.options.append(options)
        out = []
        for user in users:
            name = next(n for n in self.replies if f"def {n}(" in user)
            text = self.replies[name].pop(0)
            usage = Usage(len(user.split()), len(text.split()))
            out.append(Generation(text, confidence=0.5, usage=usage, finish_reason="stop"))
        return out


ADD_BODY = "    return x + y\n"
ADD_FULL = "def add(x: int, y: int) -> int:\n    return x + y\n"
REPLIES = {
    "fenced": f"Here you go:\n```python\n{ADD_FULL}```\nThis adds the numbers.",
    "unclosed fence": f"```python\n{ADD_FULL}",
    "raw, prose around": f"Sure:\n{ADD_FULL}This function returns the sum.",
    "body only": ADD_BODY,
    "unindented body": "return x + y",
    "other block first": f"```\n>>> add(2, 3)\n5\n```\n```py\n{ADD_FULL}```",
    "main block": f"```python\n{ADD_FULL}\nif __name__ == '__main__':\n    add(input(), 1)\n```",
}


@pytest.mark.parametrize("style", list(REPLIES))
def test_a_correct_reply_passes_whatever_its_shape(problems, style):
    problem = problems["add"]
    code = code_from_reply(REPLIES[style], "add")
    program = assemble(problem["prompt"], code, "add")
    result = run_tests(program, problem["test"], "add")
    assert result.ok, (program, result.error)
    assert program.startswith(problem["prompt"].rstrip())  # the prompt's imports stay in


def test_replies_without_code_are_recognised():
    assert code_from_reply("", "add") is None
    assert code_from_reply("I am not able to help with that.", "add") is None


def test_hand_written_solutions_pass_through_the_coder(problems):
    names = ["add", "strlen", "truncate_number"]
    model = Scripted(
        {
            "add": [REPLIES["fenced"]],
            "strlen": ["    return len(string)\n"],
            "truncate_number": [
                "```python\ndef truncate_number(number):\n    return number % 1\n```"
            ],
        }
    )
    # Whole replies, as an Agent or a model without prefill writes them.
    coder = Coder(model=model, prefill=False)
    results = coder.run_batch([humaneval_task(problems[n]) for n in names])
    assert len(model.calls) == 1 and len(model.calls[0]) == 3  # one model call for the batch
    for name, result in zip(names, results, strict=True):
        assert result.ok and result.task_id == problems[name]["task_id"]
        assert result.output["passed"] and result.output["attempts"] == 1
        assert result.output["error"] is None and result.confidence == 1.0
        assert f"def {name}(" in result.output["code"]
        assert [s.kind for s in result.path] == ["llm", "function"]
        assert result.agents == ["coder", "coder.tests"]
        assert result.path[1].decision == "accept: tests passed"
        assert result.tokens > 0 and result.cost > 0 and result.latency_s > 0


def test_a_failing_answer_is_repaired_from_the_test_error(problems):
    model = Scripted(
        {
            "add": [ADD_BODY],  # right at once
            "strlen": ["    return len(string) + 1\n", "    return len(string)\n"],  # fixed
            "truncate_number": ["    return number\n"] * 3,  # never right
        }
    )
    coder = Coder(model=model, max_repairs=2)
    tasks = [humaneval_task(problems[n]) for n in ["add", "strlen", "truncate_number"]]
    ok, fixed, stuck = coder.run_batch(tasks)
    # round 1 generates for all; each repair round only for what still fails
    assert [len(call) for call in model.calls] == [3, 2, 1]
    # each reply is prefilled with the prompt's code, so the model only writes the body
    prefill = model.chats[0][1][-1]
    assert prefill["role"] == "assistant"
    assert prefill["content"] == "```python\n" + problems["strlen"]["prompt"].rstrip() + "\n"
    # the first attempt is greedy; each repair round samples, with its own seed
    assert model.options[0]["temperature"] == 0.0
    assert [o["temperature"] for o in model.options[1:]] == [0.7, 0.7]
    assert "top_p" not in model.options[0]
    assert [o["top_p"] for o in model.options[1:]] == [0.95, 0.95]
    assert len({o["seed"] for o in model.options[1:]}) == 2

    repair_prompt = model.calls[1][0]
    assert "return len(string) + 1" in repair_prompt  # the failing code
    assert "AssertionError" in repair_prompt and "assert candidate" in repair_prompt

    assert ok.output["attempts"] == 1
    assert fixed.output == {
        "code": fixed.output["code"],
        "passed": True,
        "attempts": 2,
        "error": None,
    }
    assert fixed.confidence == 1.0
    assert [s.kind for s in fixed.path] == ["llm", "function", "llm", "function"]
    assert [s.decision.split(":")[0] for s in fixed.path] == [
        "generate",
        "repair",
        "repair 1",
        "accept",
    ]
    assert fixed.path[1].error.startswith("AssertionError")
    assert fixed.path[1].output["passed"] is False and fixed.path[3].output["passed"] is True
    assert fixed.path[2].prompt_tokens > fixed.path[0].prompt_tokens  # the code was sent back
    assert fixed.cost == pytest.approx(sum(s.cost for s in fixed.path)) and fixed.cost > 0

    assert stuck.ok and stuck.confidence == 0.0  # a finished job, just not a passing one
    assert stuck.output["passed"] is False and stuck.output["attempts"] == 3
    assert stuck.output["error"].startswith("AssertionError")
    assert len(stuck.path) == 6
    assert stuck.path[-1].decision.startswith("give up after 3 attempts: AssertionError")


def test_completion_style_continues_the_prompt_and_repairs_from_the_error(problems):
    """A base model gets the prompt's own text; a repair adds the error above it, not the code."""
    model = Scripted({"strlen": ["    return len(string) + 1\n", "    return len(string)\n"]})
    coder = Coder(model=model, style="completion", max_repairs=2)
    (result,) = coder.run_batch([humaneval_task(problems["strlen"])])
    prompt = problems["strlen"]["prompt"]
    assert model.chats[0] == [prompt]  # plain text, no chat, no prefill
    assert model.options[0]["chat"] is False
    assert "\ndef " in model.options[0]["stop"]  # the body ends where top-level code starts
    repair = model.calls[1][0]
    assert repair.endswith(prompt) and repair.startswith("# A previous version of strlen")
    assert "assert candidate" in repair and "+ 1" not in repair  # the error, not the code
    assert result.output["passed"] and result.output["attempts"] == 2
    assert result.output["code"].startswith(prompt)  # the reply continues the prompt


@pytest.mark.parametrize("style", ["chat", "completion"])
def test_without_feedback_repairs_resample_the_first_prompt(problems, style):
    """The ablation switch: repair rounds see neither the error nor the code, only a new seed."""
    model = Scripted({"strlen": ["    return len(string) + 1\n", "    return len(string)\n"]})
    coder = Coder(model=model, style=style, max_repairs=2, repair_feedback=False)
    (result,) = coder.run_batch([humaneval_task(problems["strlen"])])
    assert result.output["passed"] and result.output["attempts"] == 2
    assert model.chats[1] == model.chats[0]  # the same prompt (and prefill) again
    assert model.options[0]["temperature"] == 0.0 and model.options[1]["temperature"] == 0.7


def test_completion_style_needs_a_function_prompt_and_a_model(problems):
    spec = Task(
        text="Add two numbers.", meta={"test": "assert add(1, 2) == 3", "entry_point": "add"}
    )
    (result,) = Coder(model=Scripted({}), style="completion").run_batch([spec])
    assert not result.ok and "needs a function prompt" in result.error
    writer = FunctionAgent("llm-tier", lambda task: ("", 0.9))
    with pytest.raises(ValueError, match="completion"):
        Coder(model=writer, style="completion")
    with pytest.raises(ValueError, match="style must be one of"):
        Coder(model=Scripted({}), style="fim")


def test_without_repairs_one_attempt_only(problems):
    model = Scripted({"strlen": ["    return 0\n"]})
    (result,) = Coder(model=model, max_repairs=0).run_batch([humaneval_task(problems["strlen"])])
    assert result.output["attempts"] == 1 and not result.output["passed"]
    assert len(model.calls) == 1 and len(result.path) == 2


def test_a_reply_without_code_goes_to_repair(problems):
    model = Scripted({"add": ["I cannot do that.", REPLIES["body only"]]})
    coder = Coder(model=model, max_repairs=1, prefill=False)  # a prefill always holds code
    (result,) = coder.run_batch([humaneval_task(problems["add"])])
    assert result.output["passed"] and result.output["attempts"] == 2
    assert result.path[1].error.startswith("NoCode")
    assert "had no Python code" in model.calls[1][0] and "def add(" in model.calls[1][0]


def test_an_endless_loop_is_reported_as_a_timeout(problems):
    model = Scripted({"add": ["    while True:\n        pass\n"]})
    coder = Coder(model=model, max_repairs=0, limits={"timeout_s": 1})
    start = time.monotonic()
    (result,) = coder.run_batch([humaneval_task(problems["add"])])
    assert time.monotonic() - start < 15
    assert result.ok and not result.output["passed"] and result.confidence == 0.0
    assert result.output["error"].startswith("Timeout")
    assert result.path[-1].output["killed_by"] == "timeout"


def test_an_agent_can_be_the_model(problems):
    """The LLM tier swaps in as any Agent whose output is the reply; its steps join the path."""
    writer = FunctionAgent("llm-tier", lambda task: (REPLIES["fenced"], 0.9))
    (result,) = Coder(model=writer).run_batch([humaneval_task(problems["add"])])
    assert result.output["passed"]
    assert result.agents == ["llm-tier", "coder.tests"]
    assert result.path[0].decision == "generate"


def test_model_errors_become_error_results(problems):
    class Broken(Scripted):
        def generate(self, prompts, max_new_tokens=128, **_):
            return [Generation(error="request 0: prompt is too long") for _ in prompts]

    (result,) = Coder(model=Broken({})).run_batch([humaneval_task(problems["add"])])
    assert not result.ok and "too long" in result.error and result.output is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_repairs"):
        Coder(model=Scripted({}), max_repairs=-1)
    with pytest.raises(ValueError, match="unknown sandbox limits"):
        Coder(model=Scripted({}), limits={"timeout": 3})
    with pytest.raises(ValueError, match="timeout_s"):
        Coder(model=Scripted({}), limits={"timeout_s": 0})
    with pytest.raises(TypeError, match="model must be"):
        Coder(model=42)
    with pytest.raises(ValueError, match="repair_top_p"):
        Coder(model=Scripted({}), repair_top_p=0)


def test_real_model_on_a_humaneval_problem_with_bad_tasks_beside_it(slm, problems):
    good = humaneval_task(problems["add"])
    bad = [
        Task(text=problems["strlen"]["prompt"], meta={"entry_point": "strlen"}),  # no test
        Task(text="   ", meta={"test": problems["add"]["test"]}),
        Task(text=problems["strlen"]["prompt"], meta={"test": "assert 1", "entry_point": "a b"}),
        Task(text="Write a function.", meta={"test": "def check(candidate):\n    pass\n"}),
        42,
    ]
    results = Coder(model=slm, max_repairs=1, max_new_tokens=64).run_batch([good, *bad])
    assert len(results) == 6
    errors = [r.error for r in results[1:]]
    assert "no 'test'" in errors[0]
    assert "empty" in errors[1]
    assert "identifier" in errors[2]
    assert "no 'entry_point'" in errors[3]
    assert "must be str or Task" in errors[4]

    result = results[0]
    assert result.ok and result.task_id == "HumanEval/53"
    out = result.output
    assert 1 <= out["attempts"] <= 2 and isinstance(out["code"], str)
    assert result.confidence == float(out["passed"])
    assert (out["error"] is None) == out["passed"]
    kinds = [s.kind for s in result.path]
    assert kinds == ["llm", "function"] * out["attempts"]
    llm = result.path[0]
    assert llm.model == slm.name and llm.completion_tokens > 0 and llm.cost > 0
    assert result.path[-1].output["passed"] == out["passed"]

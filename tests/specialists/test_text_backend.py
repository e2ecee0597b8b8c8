"""Agents need only text in, text out: a backend that is not a ``CausalLM`` stands in.

``TextOnly`` is a plain class with ``name`` and ``generate`` and nothing else (no tokenizer, no
adapters, no token ids): what an HTTP endpoint offers. It is scripted, because a non-CausalLM
backend is the fault under test and this machine has no other one; the sandbox, the schema
validation and the pricing it feeds are real.
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from slm_agents.agent import LLMAgent
from slm_agents.datasets import data_dir
from slm_agents.models import Generation, Usage
from slm_agents.models.base import AdapterHost, TextGenerator, TokenAligned
from slm_agents.result import Task
from slm_agents.specialists import Coder, Extractor
from slm_agents.specialists.coder import humaneval_task

# What the agents may send; anything else is refused, as a strict endpoint would.
OPTIONS = {"max_new_tokens", "temperature", "top_p", "seed", "stop", "chat", "json_schema"}


class TextOnly:
    """Replies chosen by a word in the prompt, in order; records every call."""

    name = "text-endpoint"

    def __init__(self, replies: dict[str, list[str]]):
        self.replies = {key: list(texts) for key, texts in replies.items()}
        self.calls: list[tuple[list, dict]] = []

    def generate(self, prompts, **options):
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"{self.name} does not support {sorted(unknown)}")
        self.calls.append((list(prompts), options))
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            key = next(k for k in self.replies if k in text)
            reply = self.replies[key].pop(0)
            usage = Usage(len(text.split()), len(reply.split()))
            out.append(Generation(reply, confidence=0.75, usage=usage, finish_reason="stop"))
        return out


class Receipt(BaseModel):
    company: str = Field(max_length=16)
    total: str = Field(max_length=10)


def test_the_protocols_tell_a_text_backend_from_a_model_with_more():
    backend = TextOnly({})
    assert isinstance(backend, TextGenerator)
    assert not isinstance(backend, AdapterHost) and not isinstance(backend, TokenAligned)
    assert not hasattr(backend, "tokenizer")


def test_an_llm_agent_runs_a_batch_on_a_text_backend():
    backend = TextOnly({"Ada": ["Hello Ada!"], "Bo": ["Hi Bo."]})
    agent = LLMAgent("greeter", backend, prompt="Greet {name}. Context: {text}", system="Be brief.")
    tasks = [Task("new", meta={"name": "Ada"}), Task("old"), Task("new", meta={"name": "Bo"})]
    ada, missing, bo = agent.run_batch(tasks)
    assert ada.output == "Hello Ada!" and bo.output == "Hi Bo." and ada.confidence == 0.75
    assert not missing.ok and "{name}" in missing.error
    [(prompts, options)] = backend.calls  # one call, only the tasks that could fill the prompt
    assert len(prompts) == 2 and prompts[0][0] == {"role": "system", "content": "Be brief."}
    assert options == {"max_new_tokens": 128}  # nothing unset is sent
    step = ada.path[0]
    assert step.model == "text-endpoint" and step.prompt_tokens > 0 and step.cost > 0


def test_an_extractor_runs_a_batch_on_a_text_backend():
    good = json.dumps({"company": "ACME", "total": "5.00"})
    backend = TextOnly({"ACME": [good], "BROKEN": ["Sorry, I cannot read this receipt."]})
    extractor = Extractor(Receipt, backend, hooks={"total": "amount"}, max_new_tokens=64)
    ok, not_json, empty = extractor.run_batch(["ACME  TOTAL RM5.00", "BROKEN RECEIPT", ""])
    assert ok.ok and ok.output == Receipt(company="ACME", total="5.00")
    # No token alignment here: every field gets the generation's confidence.
    assert ok.meta["field_confidence"] == {"company": 0.75, "total": 0.75}
    assert ok.confidence == 0.75 and ok.path[0].model == "text-endpoint"
    assert not not_json.ok and "not one JSON object" in not_json.error
    assert not empty.ok and "empty" in empty.error
    [(prompts, options)] = backend.calls
    assert len(prompts) == 2 and options["json_schema"]["properties"].keys() == {
        "company",
        "total",
    }
    assert "adapter" not in options


def test_an_adapter_needs_a_backend_that_loads_adapters(tmp_path):
    with pytest.raises(TypeError, match="needs a model that loads LoRA adapters"):
        Extractor(Receipt, TextOnly({}), adapter=tmp_path)


def test_a_failing_adapter_load_keeps_its_cause(tmp_path):
    """The backend's own exception stays the cause, so its traceback is not lost."""

    class Refuses(TextOnly):
        adapters: list[str] = []

        def load_adapter(self, path, name):
            raise RuntimeError("shape mismatch in lora_A")

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot load the LoRA adapter") as caught:
        Extractor(Receipt, Refuses({}), adapter=tmp_path)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_coder_runs_a_batch_on_a_text_backend():
    with open(data_dir() / "humaneval" / "problems.jsonl", encoding="utf-8") as f:
        problems = {p["entry_point"]: p for p in map(json.loads, f)}
    backend = TextOnly(
        {
            "def strlen(": ["    return len(string) + 1\n", "    return len(string)\n"],
            "def truncate_number(": ["    return number % 1.0\n"],
        }
    )
    tasks = [humaneval_task(problems[n]) for n in ("strlen", "truncate_number")]
    fixed, right = Coder(model=backend, max_repairs=1).run_batch(tasks)
    assert right.output["passed"] and right.output["attempts"] == 1
    assert fixed.output["passed"] and fixed.output["attempts"] == 2
    assert [len(prompts) for prompts, _ in backend.calls] == [2, 1]
    first, repair = (prompts[0] for prompts, _ in backend.calls)
    assert first[-1]["role"] == "assistant"  # the prefill: a chat ending with the reply's start
    assert "AssertionError" in repair[-2]["content"]  # the repair request carries the error
    assert fixed.path[0].model == "text-endpoint" and fixed.cost > 0

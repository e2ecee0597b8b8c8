"""The bundled base model (Gemma-3-270M): assembled from its chunk packages, fed its BOS in
plain-text mode, and completing a real HumanEval function through the completion-style Coder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_agents.datasets import data_dir
from slm_agents.models.sources import BUNDLED, bundled_path, cache_dir, resolve

HUMANEVAL = data_dir() / "humaneval"


@pytest.fixture(scope="module")
def gemma():
    if bundled_path(BUNDLED["gemma-3-270m"]) is None:
        pytest.fail(f"bundled base model missing: {BUNDLED['gemma-3-270m'].install}")
    from slm_agents.models import CausalLM

    return CausalLM("gemma-3-270m", device="cpu")


def test_the_chunked_package_is_assembled_once_into_the_cache():
    resolved = resolve("gemma-3-270m")
    gguf = Path(resolved.location) / resolved.gguf_file
    assert resolved.source == "bundled" and gguf.is_file()
    assert gguf.parent == cache_dir() / "bundled" and gguf.stat().st_size > 200e6
    assert bundled_path(BUNDLED["gemma-3-270m"]) == gguf  # the second call finds it


def test_plain_text_starts_with_the_bos_a_base_model_needs(gemma):
    """Without <bos> Gemma degenerates into repetition; chat templates write their own."""
    assert not gemma.tokenizer.chat_template  # its GGUF carries none: text goes in as it is
    assert gemma._render("def f():") == "<bos>def f():"
    assert gemma._render("<bos>def f():") == "<bos>def f():"  # not doubled


def test_completion_coder_solves_a_real_humaneval_problem(gemma):
    from slm_agents.specialists import Coder
    from slm_agents.specialists.coder import humaneval_task

    rows = [json.loads(line) for line in (HUMANEVAL / "problems.jsonl").read_text().splitlines()]
    strlen = next(r for r in rows if r["task_id"] == "HumanEval/23")
    (result,) = Coder(model=gemma, style="completion", max_repairs=0).run_batch(
        [humaneval_task(strlen)]
    )
    assert result.ok and result.output["passed"], result.output
    assert result.output["code"].startswith(strlen["prompt"])
    assert result.path[0].model == "gemma-3-270m" and result.cost > 0


def test_a_row_cut_by_a_stop_string_counts_only_its_own_tokens(gemma):
    """In a batch, a stopped row is padded while others decode on; Gemma's pad is not its
    end-of-sequence token, so the pads must be told apart from generated tokens."""
    prompts = ["def add(a, b):\n    return", "# A long story about a dragon\nOnce upon a time"]
    options = dict(max_new_tokens=48, chat=False, stop=("\n",))
    stopped, _ = gemma.generate(prompts, **options)
    (alone,) = gemma.generate(prompts[:1], **options)
    assert stopped.finish_reason == "stop" and stopped.text == alone.text, (stopped, alone)
    assert stopped.usage.completion_tokens == alone.usage.completion_tokens < 48
    assert gemma.tokenizer.pad_token_id not in stopped.token_ids
    assert stopped.confidence == pytest.approx(alone.confidence, rel=1e-3)
    assert "\n" in gemma.tokenizer.decode(stopped.token_ids)  # the stop's own token counts

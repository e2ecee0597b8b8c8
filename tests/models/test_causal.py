"""CausalLM on the real bundled SmolLM2-135M-Instruct: batching, logprobs, stops, bad input."""

from __future__ import annotations

import math
import re

import pytest

from slm_agents.models import CausalLM, GenerationOptions, Request


def test_generation_reports_text_usage_and_confidence_from_logprobs(slm):
    [gen] = slm.generate(["What is the capital of France?"], max_new_tokens=24)
    assert gen.ok, gen.error
    assert "Paris" in gen.text
    assert gen.finish_reason == "stop"
    assert gen.usage.prompt_tokens > 5
    assert gen.usage.completion_tokens == len(gen.token_logprobs) > 0
    assert all(lp <= 0 for lp in gen.token_logprobs)
    mean = sum(gen.token_logprobs) / len(gen.token_logprobs)
    assert gen.confidence == pytest.approx(math.exp(mean))
    assert 0 < gen.confidence <= 1


def test_batch_keeps_order_and_matches_single_calls(slm):
    """Left padding must not change greedy output: a batch equals the prompts run alone."""
    prompts = ["Name a fruit.", "Write one word that rhymes with cat, and nothing else.", "Hi"]
    batched = slm.generate(prompts, max_new_tokens=12)
    alone = [slm.generate([p], max_new_tokens=12)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in alone]


def test_bad_requests_fail_alone_and_the_rest_complete(slm):
    huge = "word " * 9000  # more tokens than SmolLM2's 8192 context
    prompts = ["", "   ", 42, b"bytes", huge, [{"role": "user"}], "Say hello."]
    gens = slm.generate(prompts, max_new_tokens=8)
    assert len(gens) == len(prompts)
    errors = [g.error for g in gens[:-1]]
    assert "request 0: prompt is empty" in errors[0]
    assert "prompt is empty" in errors[1]
    assert "got <class 'int'>" in errors[2]
    assert "bytes" in errors[3]
    assert "tokens but the context is 8192" in errors[4]
    assert "role and content" in errors[5]
    assert gens[-1].ok and gens[-1].text


def test_chat_messages_are_accepted(slm):
    """A system message reaches the model: it takes the name it was given."""
    question = "What is your name?"
    messages = [
        {"role": "system", "content": "You are Zorblax, a support bot for a bank."},
        {"role": "user", "content": question},
    ]
    [chat, plain] = slm.generate([messages, question], max_new_tokens=20)
    assert "Zorblax" in chat.text, chat.text
    assert "Zorblax" not in plain.text


def test_a_trailing_assistant_message_is_continued(slm):
    """A prefill: the reply goes on from the assistant's text instead of opening a new turn."""
    prefill = "The capital of France is"
    chat = [
        {"role": "user", "content": "Name the capital of France."},
        {"role": "assistant", "content": prefill},
    ]
    assert slm._render(chat).endswith(prefill)  # no end-of-turn after it
    [gen] = slm.generate([chat], max_new_tokens=8)
    assert gen.ok and "Paris" in gen.text, gen.text
    assert prefill not in gen.text  # the text is the continuation only


def test_plain_text_skips_the_chat_template_with_chat_false(slm):
    """Completion for base-model style prompts: the text goes in as it is."""
    code = "def add(a, b):\n    return"
    assert slm._render(code, chat=False) == code  # SmolLM2's tokenizer adds no BOS
    assert slm._render(code) != code  # wrapped as a user message by default
    [raw, chat] = (
        slm.generate([code], max_new_tokens=4, chat=False),
        slm.generate([code], max_new_tokens=4),
    )
    assert raw[0].ok and raw[0].usage.prompt_tokens < chat[0].usage.prompt_tokens
    [bad] = slm.generate([[{"role": "user", "content": code}]], chat=False)
    assert not bad.ok and "chat=False takes plain-text prompts" in bad.error


def test_max_new_tokens_ends_with_length(slm):
    [gen] = slm.generate(["Tell me a long story about a dragon."], max_new_tokens=5)
    assert gen.finish_reason == "length"
    assert gen.usage.completion_tokens == 5


def test_stop_string_cuts_the_text(slm):
    prompt = "List the numbers from 1 to 10, separated by commas."
    [free] = slm.generate([prompt], max_new_tokens=40)
    assert ", 4," in free.text, free.text  # the model does count; otherwise the test proves nothing
    [cut] = slm.generate([prompt], max_new_tokens=40, stop=[", 4"])
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.index(", 4")]
    assert cut.usage.completion_tokens < free.usage.completion_tokens


def teacher_forced_logprobs(slm, prompt: str, gen, warpers=()) -> list[float]:
    """Log-probs of gen's tokens from one forward pass over prompt + tokens, after warpers."""
    import torch

    prompt_ids = slm.tokenizer(prompt, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + gen.token_ids])
    with torch.inference_mode():
        logits = slm.model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    for warp in warpers:
        logits = warp(ids, logits)
    return torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt_ids) :, None])[:, 0].tolist()


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (0.7, 0.9)])
def test_token_logprobs_are_those_of_the_distribution_sampled_from(slm, temperature, top_p):
    """Recorded step by step (not from output_scores): each must match a teacher-forced pass."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    prompts = ["The capital of France is", "def add(a, b):\n    return"]  # unequal: padded
    gens = slm.generate(
        prompts, max_new_tokens=10, chat=False, temperature=temperature, top_p=top_p, seed=3
    )
    warpers = [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)] if temperature else []
    for prompt, gen in zip(prompts, gens, strict=True):
        assert gen.ok and len(gen.token_ids) == len(gen.token_logprobs) > 1, gen
        expected = teacher_forced_logprobs(slm, prompt, gen, warpers)
        assert gen.token_logprobs == pytest.approx(expected, abs=2e-3)


def test_sampling_is_reproducible_with_a_seed(slm):
    run = lambda seed: [  # noqa: E731
        g.text
        for g in slm.generate(["Write a poem."] * 2, max_new_tokens=16, temperature=0.9, seed=seed)
    ]
    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize(
    "bad",
    [dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(stop=("",))],
)
def test_invalid_options_name_the_parameter(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        GenerationOptions(**bad)


def test_regex_constraint(slm):
    [gen] = slm.generate(["Give me a phone number."], regex=r"[0-9]{3}-[0-9]{4}", max_new_tokens=12)
    assert gen.ok, gen.error
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", gen.text)


def test_invalid_schema_and_truncated_json_are_errors_for_that_request_only(slm):
    person = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 30},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},  # bounded: see docs/models.md
        },
        "required": ["name", "age"],
    }
    gens = slm.generate(
        [
            Request("Invent a person.", json_schema={"type": "frobnicate"}),
            Request("Invent a person.", regex="("),
            Request("Invent a person.", json_schema=person),
        ],
        max_new_tokens=40,
    )
    assert (
        gens[0].error and "invalid JSON schema" in gens[0].error and "frobnicate" in gens[0].error
    )
    assert gens[1].error and "invalid regex" in gens[1].error
    assert gens[2].ok and set(gens[2].parsed) == {"name", "age"}

    [short] = slm.generate([Request("Invent a person.", json_schema=person)], max_new_tokens=3)
    assert short.finish_reason == "length"
    assert "raise max_new_tokens" in short.error


def test_unknown_adapter_is_rejected(slm):
    with pytest.raises(ValueError, match="no adapters are loaded"):
        slm.generate(["Hi"], adapter="support")


def test_int8_quantization_shrinks_linears_and_still_answers():
    import torch

    lm = CausalLM(device="cpu", quantize="int8")
    quantized = [
        m for m in lm.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
    ]
    assert len(quantized) > 100  # every projection in 30 layers, plus the head
    [gen] = lm.generate(["What is the capital of France?"], max_new_tokens=16)
    assert "Paris" in gen.text
    with pytest.raises(ValueError, match="unquantized"):
        lm.load_adapter("/nonexistent", "x")


def test_device_choice_is_validated():
    import torch

    from slm_agents.models.base import pick_device

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")

"""What a server needs of ``CausalLM`` besides generate: a check before queueing that is safe
beside a running batch, cancellation, and the likeliest alternatives per token."""

from __future__ import annotations

import threading

import pytest

from slm_agents.models.base import InputError
from slm_agents.models.hf import GenerationOptions, Request

PROMPTS = [f"Tell me about ticket number {i}" + " please" * (i % 5) for i in range(8)]


def test_check_beside_a_running_batch_does_not_break_it(slm):
    """A fast tokenizer is not thread-safe: an unpadded encode (the check) while another
    thread pads a batch used to break that batch ("expected sequence of length ...")."""
    options = GenerationOptions(max_new_tokens=4)
    stop = threading.Event()
    errors: list[Exception] = []

    def check_forever() -> None:
        while not stop.is_set():
            try:
                slm.check(Request("a short one"), options)
            except Exception as exc:  # any failure here is the bug
                errors.append(exc)

    checker = threading.Thread(target=check_forever)
    checker.start()
    try:
        for _ in range(6):
            gens = slm.generate(PROMPTS, max_new_tokens=4)
            assert all(g.ok for g in gens), [g.error for g in gens]
    finally:
        stop.set()
        checker.join()
    assert errors == []


def test_check_does_not_wait_for_a_running_batch(slm):
    """A server checks each request as it arrives; if the check waited for the batch that is
    running, requests arriving meanwhile would reach the batcher one by one after it, and the
    next batch would form from whoever was first (closed-loop clients split into cohorts)."""
    slm.check(Request("warm up"), GenerationOptions())  # the first check copies the tokenizer
    checked = threading.Event()
    with slm._lock:  # what a running generate holds for the whole batch
        worker = threading.Thread(
            target=lambda: (slm.check(Request("hi there"), GenerationOptions()), checked.set())
        )
        worker.start()
        assert checked.wait(timeout=10), "check waited for the model lock"
    worker.join()


def test_check_names_what_generate_would_refuse(slm):
    with pytest.raises(InputError, match="empty"):
        slm.check(Request("  "), GenerationOptions())
    with pytest.raises(InputError, match="context"):
        slm.check(Request("hi"), GenerationOptions(max_new_tokens=100_000))
    assert slm.check(Request("hi there"), GenerationOptions()) > 0


def test_a_set_cancel_event_stops_decoding(slm):
    cancel = threading.Event()
    cancel.set()
    [gen] = slm.generate(["Count from one to a hundred"], max_new_tokens=64, cancel=cancel)
    assert gen.usage.completion_tokens <= 1 and gen.finish_reason == "length"
    [full] = slm.generate(["Count from one to a hundred"], max_new_tokens=64)
    assert full.usage.completion_tokens > 10


def test_top_logprobs_are_the_likeliest_tokens_per_step(slm):
    [gen] = slm.generate(["Name a colour"], max_new_tokens=6, top_logprobs=4)
    assert len(gen.top_logprobs) == len(gen.token_ids)
    for chosen, logprob, top in zip(gen.token_ids, gen.token_logprobs, gen.top_logprobs,
                                    strict=True):  # fmt: skip
        assert len(top) == 4 and [lp for _, lp in top] == sorted((lp for _, lp in top),
                                                                   reverse=True)  # fmt: skip
        assert top[0] == (chosen, pytest.approx(logprob))  # greedy takes the likeliest
    [plain] = slm.generate(["Name a colour"], max_new_tokens=6)
    assert plain.top_logprobs == [] and plain.text == gen.text

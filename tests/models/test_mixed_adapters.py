"""Requests for different LoRA adapters in one batch: one forward pass, same text as alone."""

from __future__ import annotations

import threading

import pytest
from adapter_factory import make_adapter

from slm_agents.models import CausalLM, Request

ANIMALS = "Name three animals."
CAPITAL = "What is the capital of France?"
TOKENS = 16


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory):
    lm = CausalLM(device="cpu")
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(lm, root / "a", seed=1)
    make_adapter(lm, root / "b", seed=2)
    return root


@pytest.fixture(scope="module")
def lm(adapters_dir):
    lm = CausalLM(device="cpu")
    lm.load_adapter(str(adapters_dir / "a"), "a")
    lm.load_adapter(str(adapters_dir / "b"), "b")
    return lm


def count_generate_calls(lm: CausalLM, monkeypatch) -> list[list[str] | None]:
    """Wrap ``lm.model.generate``; the list it returns gets each call's ``adapter_names``."""
    calls: list[list[str] | None] = []
    inner = lm.model.generate

    def counted(*args, **kwargs):
        calls.append(kwargs.get("adapter_names"))
        return inner(*args, **kwargs)

    monkeypatch.setattr(lm.model, "generate", counted)
    return calls


def alone(lm: CausalLM, prompt: str, adapter: str | None):
    return lm.generate([prompt], adapter=adapter, max_new_tokens=TOKENS)[0]


def test_a_mixed_batch_runs_in_one_pass_and_equals_each_request_alone(lm, monkeypatch):
    rows = [(ANIMALS, "a"), (ANIMALS, "b"), (ANIMALS, None), (CAPITAL, "a"), (CAPITAL, None)]
    expected = [alone(lm, prompt, adapter) for prompt, adapter in rows]
    calls = count_generate_calls(lm, monkeypatch)

    mixed = lm.generate([Request(p, adapter=a) for p, a in rows], max_new_tokens=TOKENS)

    assert calls == [["a", "b", "__base__", "a", "__base__"]]  # one forward pass for all
    for got, want in zip(mixed, expected, strict=True):
        assert got.ok, got.error
        assert got.text == want.text and got.token_ids == want.token_ids
        assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-3)
        assert got.finish_reason == want.finish_reason and got.usage == want.usage
    with_a, with_b, base = (g.text for g in mixed[:3])
    assert len({with_a, with_b, base}) == 3  # each row really went through its own adapter
    assert mixed[3].text != mixed[4].text


def test_request_adapter_none_takes_the_batch_option(lm, monkeypatch):
    expected = [alone(lm, ANIMALS, "a"), alone(lm, ANIMALS, "b")]
    calls = count_generate_calls(lm, monkeypatch)
    got = lm.generate(
        [Request(ANIMALS), Request(ANIMALS, adapter="b")], adapter="a", max_new_tokens=TOKENS
    )
    assert calls == [["a", "b"]]
    assert [g.text for g in got] == [g.text for g in expected]


def test_one_adapter_for_every_row_keeps_the_plain_path(lm, monkeypatch):
    expected = alone(lm, CAPITAL, "b")
    calls = count_generate_calls(lm, monkeypatch)
    got = lm.generate([Request(CAPITAL, adapter="b")] * 2, max_new_tokens=TOKENS)
    assert calls == [None]  # set_adapter, no adapter_names
    assert [g.text for g in got] == [expected.text] * 2


def test_an_unknown_request_adapter_fails_that_request_only(lm):
    gens = lm.generate(
        [Request(CAPITAL, adapter="nope"), Request(CAPITAL, adapter="a"), CAPITAL],
        max_new_tokens=TOKENS,
    )
    assert gens[0].error == "request 0: unknown adapter 'nope'; loaded: ['a', 'b']"
    assert gens[1].ok and gens[1].text == alone(lm, CAPITAL, "a").text
    assert gens[2].ok and gens[2].text == alone(lm, CAPITAL, None).text
    with pytest.raises(ValueError, match="reserved for the base model"):
        lm.load_adapter("unused", "__base__")


def test_stream_uses_the_request_adapter(lm):
    *deltas, final = lm.stream(Request(ANIMALS, adapter="b"), max_new_tokens=TOKENS)
    assert final.ok and "".join(deltas) == final.text == alone(lm, ANIMALS, "b").text


def test_unloading_waits_for_a_running_mixed_batch(adapters_dir):
    """A server evicts adapters from another thread: the batch in flight finishes intact."""
    lm = CausalLM(device="cpu")
    lm.load_adapter(str(adapters_dir / "a"), "a")
    lm.load_adapter(str(adapters_dir / "b"), "b")
    batch = [Request(ANIMALS, adapter="a"), Request(ANIMALS, adapter="b"), Request(ANIMALS)]
    expected = [g.text for g in lm.generate(batch, max_new_tokens=48)]

    started = threading.Event()
    inner = lm.model.generate

    def signalling(*args, **kwargs):
        started.set()
        return inner(*args, **kwargs)

    lm.model.generate = signalling
    out: dict[str, list] = {}
    worker = threading.Thread(target=lambda: out.update(gens=lm.generate(batch, max_new_tokens=48)))
    worker.start()
    assert started.wait(120)
    lm.unload_adapter("b")
    batch_done_before_unload = "gens" in out
    worker.join()

    assert batch_done_before_unload
    assert [g.text for g in out["gens"]] == expected
    assert lm.adapters == ["a"]
    after = lm.generate(batch, max_new_tokens=8)
    assert after[1].error == "request 1: unknown adapter 'b'; loaded: ['a']"
    assert after[0].ok and after[2].ok

"""LoRA adapters on one base model: load, switch, unload by name (PEFT)."""

from __future__ import annotations

import pytest
from adapter_factory import make_adapter

from slm_agents.models import CausalLM

PROMPT = ["Name three animals."]


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory):
    lm = CausalLM(device="cpu")
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(lm, root / "a", seed=1)
    make_adapter(lm, root / "b", seed=2)
    return root


def text(lm: CausalLM, adapter: str | None = None) -> str:
    return lm.generate(PROMPT, max_new_tokens=12, adapter=adapter)[0].text


def test_load_switch_and_unload_adapters(adapters_dir):
    lm = CausalLM(device="cpu")
    base = text(lm)

    lm.load_adapter(str(adapters_dir / "a"), "a")
    lm.load_adapter(str(adapters_dir / "b"), "b")
    assert lm.adapters == ["a", "b"]
    with_a, with_b = text(lm, "a"), text(lm, "b")
    assert with_a != base and with_b != base and with_a != with_b
    assert text(lm) == base  # no adapter named: the base model answers
    assert text(lm, "a") == with_a  # switching back is exact

    with pytest.raises(ValueError, match="unknown adapter 'c'"):
        lm.generate(PROMPT, adapter="c")
    with pytest.raises(ValueError, match="already loaded"):
        lm.load_adapter(str(adapters_dir / "a"), "a")

    lm.unload_adapter("a")
    assert lm.adapters == ["b"]
    assert text(lm, "b") == with_b
    lm.unload_adapter("b")
    assert lm.adapters == []
    assert text(lm) == base
    with pytest.raises(KeyError, match="no adapter 'b'"):
        lm.unload_adapter("b")


def test_missing_adapter_folder_is_a_clear_error(tmp_path):
    lm = CausalLM(device="cpu")
    with pytest.raises(Exception, match="adapter_config.json|Can't find"):
        lm.load_adapter(str(tmp_path / "nothing-here"), "x")

"""Several agents in one Ray actor: two LoRA adapters on one copy of the base model."""

from __future__ import annotations

import pytest
from adapter_factory import make_adapter

from slm_agents.models import CausalLM
from slm_agents.runtime import AgentSpec, HostingConfig, RayAgent


@pytest.fixture(scope="module")
def adapter_specs(tmp_path_factory):
    lm = CausalLM(device="cpu")
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(lm, root / "terse", seed=1)
    make_adapter(lm, root / "chatty", seed=2)
    adapters = {"terse": str(root / "terse"), "chatty": str(root / "chatty")}
    common = {"kind": "llm", "model": "smollm2-135m-instruct", "max_new_tokens": 8,
              "device": "cpu", "adapters": adapters}  # fmt: skip
    return [AgentSpec("terse", adapter="terse", **common),
            AgentSpec("chatty", adapter="chatty", **common)]  # fmt: skip


def test_adapters_share_one_model_in_one_actor(ray_cluster, adapter_specs):
    shared = RayAgent.share(adapter_specs, hosting=HostingConfig(num_cpus=1, max_wait_ms=20))
    try:
        tasks = ["Name a colour.", "Name a fruit."]
        terse, chatty = shared["terse"].submit(tasks), shared["chatty"].submit(tasks)
        terse_out, chatty_out = terse.result(), chatty.result()
        [info] = shared["terse"].info()
        assert info["agents"] == ["terse", "chatty"] and info["models"] == 1
        assert all(info["batches_by_agent"][name] for name in ("terse", "chatty"))
        local = {spec.name: spec.build() for spec in adapter_specs}
        assert [r.output for r in terse_out] == [r.output for r in local["terse"].run_batch(tasks)]
        assert [r.output for r in chatty_out] == [
            r.output for r in local["chatty"].run_batch(tasks)
        ]
        assert [r.output for r in terse_out] != [r.output for r in chatty_out]
        assert {r.path[0].agent for r in chatty_out} == {"chatty"}
    finally:
        shared["terse"].shutdown()


def test_share_needs_distinct_names(adapter_specs):
    with pytest.raises(ValueError, match="distinct names"):
        RayAgent.share([adapter_specs[0], adapter_specs[0]])

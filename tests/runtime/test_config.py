"""HostingConfig: one validated value for how Ray hosts an agent; bad values name themselves."""

from __future__ import annotations

import dataclasses

import pytest

from slm_agents.runtime import HostingConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("replicas", 0, "replicas must be an integer >= 1, got 0"),
        ("replicas", 1.5, "replicas must be an integer >= 1, got 1.5"),
        ("replicas", True, "replicas must be an integer >= 1, got True"),
        ("num_cpus", 0, "num_cpus must be a number > 0, got 0"),
        ("num_cpus", "2", "num_cpus must be a number > 0, got '2'"),
        ("num_gpus", -0.5, "num_gpus must be a number >= 0, got -0.5"),
        ("max_concurrency", 0, "max_concurrency must be an integer >= 1, got 0"),
        ("max_batch_size", 0, "max_batch_size must be an integer >= 1, got 0"),
        ("max_wait_ms", -1, "max_wait_ms must be a number >= 0, got -1"),
        ("max_wait_ms", float("nan"), "max_wait_ms must be a number >= 0, got nan"),
        ("max_retries", -1, "max_retries must be an integer >= 0, got -1"),
        ("max_pending", 0, "max_pending must be an integer >= 1, got 0"),
        ("when_full", "drop", "when_full must be one of ('wait', 'error'), got 'drop'"),
        ("address", "", "address must be a non-empty string or None, got ''"),
        ("startup_timeout_s", 0, "startup_timeout_s must be a number > 0, got 0"),
    ],
)
def test_a_bad_value_is_named_with_the_parameter(field, value, message):
    with pytest.raises(ValueError) as error:
        HostingConfig(**{field: value})
    assert str(error.value) == message


def test_defaults_are_valid_frozen_and_varied_by_replace():
    config = HostingConfig()
    assert (config.replicas, config.max_batch_size, config.when_full) == (1, 16, "wait")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.replicas = 2  # type: ignore[misc]
    assert dataclasses.replace(config, num_cpus=0.5).num_cpus == 0.5
    with pytest.raises(ValueError, match="replicas must be an integer >= 1, got 0"):
        dataclasses.replace(config, replicas=0)


def test_ray_agent_takes_only_a_hosting_config():
    from slm_agents.runtime import AgentSpec, RayAgent

    spec = AgentSpec("router", "classifier", "all-minilm-l6-v2", labels=["a", "b"])
    with pytest.raises(TypeError, match="hosting must be a HostingConfig, got dict"):
        RayAgent(spec, hosting={"num_cpus": 1})  # type: ignore[arg-type]

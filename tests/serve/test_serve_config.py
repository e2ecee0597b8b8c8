"""Serve configs: validated before anything starts, errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_agents.serve.config import ServeConfigError, default_config, load_serve_config
from slm_agents.teamspec import load_team_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


def test_the_examples_load():
    config = load_serve_config(EXAMPLES / "serve.yaml")
    assert [m.model_id for m in config.models] == ["smollm2-135m-instruct"]
    assert set(config.teams) == {"support-desk"}
    spec = load_team_spec(EXAMPLES / "support_desk_llm_tier.yaml")
    assert spec.agents["llm-tier"].endpoint.base_url == "http://127.0.0.1:8000/v1"


def test_without_a_file_every_installed_causal_model_is_served():
    ids = [m.model_id for m in default_config().models]
    assert "smollm2-135m-instruct" in ids and "all-minilm-l6-v2" not in ids


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("models: [{model: m, deployment: {num_cpus: -1}}]", "models.0.deployment.num_cpus"),
        ("models: [{model: m, replicas: 2}]", "models.0.replicas: Extra inputs"),
        ("models: [{model: m}, {model: m}]", "model ids must be unique"),
        ("models: [{model: m, id: 'a:b'}]", "cannot contain ':'"),
        ("models: [{model: m, adapters: {x: nowhere}}]", "models[0].adapters.x"),
        ("teams: {desk: {spec: missing.yaml}}", "teams.desk.spec: no file"),
        ("request_timeout_s: 0", "request_timeout_s"),
        ("models: [{model: m, quantize: int8, adapters_dir: a}]", "cannot host LoRA adapters"),
        ("{}", "serves nothing"),
        ("[1, 2]", "a YAML mapping"),
        ("models: [{model: m, deployment: {autoscaling: {min_replicas: 3, max_replicas: 1}}}]",
         "min_replicas (3) > max_replicas (1)"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_field(tmp_path, text, says):
    with pytest.raises(ServeConfigError, match="serve.yaml") as caught:
        load_serve_config(write(tmp_path, text))
    assert says in str(caught.value)


def test_deployment_settings_become_serve_options(tmp_path):
    text = """
models:
  - model: smollm2-135m-instruct
    deployment: {num_cpus: 0.5, num_gpus: 0.25, max_ongoing_requests: 8,
                 max_queued_requests: 4, autoscaling: {min_replicas: 1, max_replicas: 3}}
  - model: smollm2-135m-instruct
    id: two
    deployment: {replicas: 2}
"""
    first, second = load_serve_config(write(tmp_path, text)).models
    options = first.deployment.serve_options()
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert options["max_ongoing_requests"] == 8 and options["max_queued_requests"] == 4
    assert options["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in options
    assert second.deployment.serve_options()["num_replicas"] == 2


def test_adapters_are_found_in_the_adapters_folder(tmp_path):
    for name in ("alpha", "beta"):
        (tmp_path / "adapters" / name).mkdir(parents=True)
        (tmp_path / "adapters" / name / "adapter_config.json").write_text("{}")
    (tmp_path / "adapters" / "notes").mkdir()  # not an adapter: no adapter_config.json
    config = load_serve_config(write(tmp_path, "models: [{model: m, adapters_dir: adapters}]"))
    assert sorted(config.models[0].adapter_paths(config.base)) == ["alpha", "beta"]


PORT_IN_USE = """
import socket, sys
import ray
from slm_agents.serve.app import start
from slm_agents.serve.config import default_config
with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        start(default_config(), port=busy.getsockname()[1])
    except OSError as exc:
        print("ERROR", exc)
print("RAY", ray.is_initialized())
"""


def test_a_port_in_use_fails_before_ray_is_touched():
    """In a fresh process: the check comes before Ray is started or joined (RAY_ADDRESS set
    would otherwise join a shared cluster for nothing)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", PORT_IN_USE], capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    assert "is in use; pick another with --port" in out.stdout, out.stderr[-2000:]
    assert "RAY False" in out.stdout

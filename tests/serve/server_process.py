"""A real ``slm-agents serve`` process for the serve tests: Ray Serve on 127.0.0.1, the
bundled SmolLM2 with two real LoRA adapters, a tightly bounded copy for the 429/504 tests, and
a zero-shot support router served as ``team:desk``.

It runs as a subprocess through the CLI (so the tests also cover starting, printing the URL and
stopping on SIGTERM) and joins a Ray cluster started for it (``conftest.py``), away from the
runtime tests' cluster.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from adapter_factory import make_adapter

API_KEY = "sk-test-serve-0123456789"
MODEL = "smollm2-135m-instruct"
TIGHT = "smollm2-tight"  # one request at a time, one queued, a 6 s timeout
REPO = Path(__file__).resolve().parents[2]
# Ray 2.60 turns on token authentication for `ray start`; the test cluster does without.
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen
    log: Path
    api_key: str = API_KEY
    ray_address: str = ""  # the cluster it joined with --address
    close_cluster: Callable[[], None] = lambda: None  # stops the server, then that cluster

    def client(self, **options):
        from openai import OpenAI

        options = {"api_key": self.api_key, "max_retries": 0, "timeout": 120.0} | options
        return OpenAI(base_url=self.base_url, **options)

    def post(self, path: str, body, key: str | None = API_KEY, **options) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = self.base_url.removesuffix("/v1") + path
        return httpx.post(url, json=body, headers=headers, timeout=120, **options)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(folder: Path) -> Path:
    from slm_agents.models import CausalLM

    lm = CausalLM(MODEL, device="cpu")
    for seed, name in ((1, "alpha"), (2, "beta")):
        make_adapter(lm, folder / "adapters" / name, seed=seed)
    del lm
    broken = folder / "adapters" / "broken"  # listed (it has a config) but fails to load
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    team = {
        "name": "desk",
        "agents": {
            "desk": {
                "kind": "support-router",
                "model": "all-minilm-l6-v2",
                "labels_file": str(REPO / "examples" / "banking77_departments.yaml"),
                "departments_file": str(REPO / "examples" / "banking77_departments.yaml"),
            }
        },
        "flow": {"agent": "desk"},
    }
    (folder / "desk.yaml").write_text(yaml.safe_dump(team))
    small = {"num_cpus": 0.5, "batch": {"max_batch_size": 8, "wait_s": 0.05}}
    config = {
        "request_timeout_s": 120,
        "models": [
            {"model": MODEL, "adapters_dir": "adapters", "max_adapters_per_replica": 2,
             "deployment": small | {"max_ongoing_requests": 16, "max_queued_requests": 64}},
            {"model": MODEL, "id": TIGHT, "request_timeout_s": 6,
             "deployment": small | {"max_ongoing_requests": 1, "max_queued_requests": 1,
                                    "batch": {"max_batch_size": 1, "wait_s": 0.0}}},
        ],
        "teams": {"desk": {"spec": "desk.yaml"}},
    }  # fmt: skip
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

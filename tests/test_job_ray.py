"""`slm-agents run --address`: the team is hosted on an existing Ray cluster, not a new one.

A real head node is started with `ray start --head --block` in its own temp dir; the job runs in
a separate process, as a user's would; the head's worker logs then show the agent actor that
the job placed there. Terminating the `--block` process stops that head and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ray_head import ray_head

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
SPEC = """
name: routing-on-ray
agents:
  router: {kind: classifier, model: all-minilm-l6-v2, labels_file: banking77_departments.yaml}
flow: {agent: router}
input: {text_column: text, id_column: id, label_column: department}
"""


@pytest.fixture
def head():
    with ray_head() as (address, temp):
        yield address, temp


def test_run_with_address_hosts_the_agents_on_that_cluster(tmp_path, head):
    address, temp = head
    shutil.copy(EXAMPLES / "banking77_departments.yaml", tmp_path)
    (tmp_path / "team.yaml").write_text(SPEC)
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [BIN / "slm-agents", "run", tmp_path / "team.yaml", "--input",
         EXAMPLES / "data" / "support_tickets.csv", "--output", out, "--limit", "8",
         "--address", address],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        # `ray start` turns on token auth; a driver sends ~/.ray/auth_token only in token mode
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"t{i:03d}" for i in range(8)]
    assert all(r["error"] is None and r["output"] for r in rows)
    # The agent actor ran in a worker of *this* head, not in a cluster the job started itself.
    worker_logs = "".join(
        p.read_text(errors="replace") for p in temp.glob("session_*/logs/worker-*")
    )
    assert ":actor_name:AgentActor" in worker_logs

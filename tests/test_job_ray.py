"""`slm-agents run --address`: the team is hosted on an existing Ray cluster, not a new one.

A real head node is started with `ray start --head --block` in its own temp dir; the job runs in
a separate process, as a user's would; the head's worker logs then show the agent actor that
the job placed there. Terminating the `--block` process stops that head and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """(address, temp dir) of a fresh one-node Ray cluster with 2 logical CPUs."""
    # Ray's socket paths must stay under ~107 characters: a short dir, not pytest's tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="rayhead", dir="/tmp"))
    port = free_port()
    log = temp / "head.log"
    with log.open("w") as sink:
        head = subprocess.Popen(
            [BIN / "ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail(f"ray start --head did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield address, temp
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_run_with_address_hosts_the_agents_on_that_cluster(tmp_path, ray_head):
    address, temp = ray_head
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

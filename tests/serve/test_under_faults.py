"""A replica killed under load: the server keeps answering, and ``slm-agents run`` with the
served model as its LLM tier still ends with every input exactly once.

Last in the package (file order): it kills the main model's replica, which Serve restarts, and
then stops the shared server with SIGTERM.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from server_process import API_KEY, MODEL, RAY_ENV

pytestmark = pytest.mark.slow

REPLICA = f"ServeReplica:slm-agents:model-{MODEL}"


def replica_pids() -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(REPLICA in part for part in process.info["cmdline"] or []):
            found.append(process.pid)
    return found


def test_a_killed_replica_loses_no_request(server, tmp_path):
    team = {
        "name": "replies",
        "agents": {
            "writer": {
                "kind": "llm",
                "endpoint": {"base_url": server.base_url, "model": MODEL,
                             "api_key_env": "SERVE_TEST_KEY", "max_retries": 10,
                             "timeout_s": 120},
                "prompt": "Reply to this customer in one short sentence: {text}",
                "max_new_tokens": 12,
            }
        },
        "flow": {"agent": "writer"},
    }  # fmt: skip
    spec = tmp_path / "team.yaml"
    spec.write_text(yaml.safe_dump(team))
    requests = tmp_path / "tickets.csv"
    with requests.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(48):
            writer.writerow([f"t{i}", f"Ticket {i}: my transfer {i} has not arrived yet"])
    output = tmp_path / "out.jsonl"
    before = replica_pids()
    assert len(before) == 1, before
    command = [str(Path(sys.executable).parent / "slm-agents"), "run", str(spec),
               "--input", str(requests), "--output", str(output), "--batch-size", "8",
               "--no-track"]  # fmt: skip
    env = os.environ | {"SERVE_TEST_KEY": API_KEY}
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (output.exists() and output.read_text().count("\n") >= 8):
        assert job.poll() is None, job.stdout.read().decode()
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.2)
    psutil.Process(before[0]).kill()  # mid-job: a batch of requests is in flight on it
    # the server itself keeps answering while Serve replaces the replica
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200
    out, _ = job.communicate(timeout=400)
    assert job.returncode == 0, out.decode()[-3000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(f"t{i}" for i in range(48))  # every input exactly once
    assert [r for r in records if r.get("error")] == []
    after = replica_pids()
    assert after and after != before  # a new replica answers now
    reply = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content


APPS = """
import sys, ray
from ray import serve
ray.init(address=sys.argv[1], log_to_driver=False)
print("APPS", sorted(serve.status().applications))
"""


def test_sigterm_stops_the_server_and_only_its_application(server):
    """Last of all: on a cluster it joined, the server takes down its own application and
    leaves the cluster, and its Serve, running."""
    server.process.send_signal(signal.SIGTERM)
    try:
        assert server.process.wait(timeout=90) == 0, server.output()[-4000:]
        assert "stopped." in server.output()
        apps = subprocess.run([sys.executable, "-c", APPS, server.ray_address],
                              capture_output=True, text=True, timeout=120,
                              env=os.environ | RAY_ENV)  # fmt: skip
        assert apps.returncode == 0, apps.stderr[-3000:]
        [line] = [x for x in apps.stdout.splitlines() if x.startswith("APPS ")]
        assert "slm-agents" not in json.loads(line.removeprefix("APPS ").replace("'", '"'))
    finally:
        server.close_cluster()  # the cluster's Ray processes go now, not at the session's end

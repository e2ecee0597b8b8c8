"""``slm-agents serve --address``: the server joins a Ray cluster that was there before it, and
on SIGTERM takes down only its own application, leaving the cluster (and its Serve) running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


APPS = """
import sys, ray
from ray import serve
ray.init(address=sys.argv[1], log_to_driver=False)
print("APPS", sorted(serve.status().applications))
"""


def test_serve_on_an_existing_cluster(tmp_path):
    gcs = free_port()
    # Ray 2.60 turns on token authentication for `ray start`; a test cluster does without
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=2", "--block",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    address = f"127.0.0.1:{gcs}"
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"models": [{"model": "smollm2-135m-instruct",
                                                  "deployment": {"num_cpus": 1}}]}))  # fmt: skip
    port = free_port()
    log = tmp_path / "server.log"
    try:
        time.sleep(8)  # the head's GCS comes up
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [str(BIN / "slm-agents"), "serve", str(config), "--address", address,
                 "--port", str(port)],
                stdout=sink, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 240
        while "serving" not in log.read_text(errors="replace"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "smollm2-135m-instruct", "max_tokens": 4,
                  "messages": [{"role": "user", "content": "Hi"}]},
            timeout=120,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        # a second server on the same cluster refuses to replace the first one's application
        second = subprocess.run(
            [str(BIN / "slm-agents"), "serve", str(config), "--address", address,
             "--port", str(free_port())],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert second.returncode == 2 and "already runs" in second.stdout + second.stderr
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30)
        assert health.status_code == 200  # the first server is untouched
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == 0, log.read_text()[-3000:]
        # the cluster is still up, and our application is gone from its Serve
        apps = subprocess.run([sys.executable, "-c", APPS, address], capture_output=True,
                              text=True, timeout=120, env=env)  # fmt: skip
        assert apps.returncode == 0, apps.stderr[-3000:]
        [line] = [x for x in apps.stdout.splitlines() if x.startswith("APPS ")]
        assert "slm-agents" not in json.loads(line.removeprefix("APPS ").replace("'", '"'))
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()

"""The serve tests share one server process (see ``server_process.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_process import API_KEY, Server, free_port, write_config


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    config = write_config(folder)
    port = free_port()
    log = folder / "server.log"
    env = os.environ | {"SLM_AGENTS_API_KEY": API_KEY, "RAY_ADDRESS": ""}  # a fresh local Ray
    env.pop("RAY_ADDRESS")
    command = str(Path(sys.executable).parent / "slm-agents")
    cli = [command, "serve", str(config), "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(cli, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=folder)
    running = Server(f"http://127.0.0.1:{port}/v1", process, log)
    deadline = time.monotonic() + 300
    while "serving" not in running.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"slm-agents serve did not start:\n{running.output()[-4000:]}")
        time.sleep(1)
    yield running
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"slm-agents serve did not stop on SIGTERM:\n{running.output()[-4000:]}")
    assert process.returncode == 0, running.output()[-4000:]
    assert "stopped." in running.output()

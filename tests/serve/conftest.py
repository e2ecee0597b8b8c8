"""The serve tests share one server process (see ``server_process.py``), started with
``--address`` on a Ray cluster that was there before it.

The last test of the package (``test_under_faults.py``, last in file order) stops it with
SIGTERM and checks that only our application went; the fixture's own teardown comes at the end
of the session (a conftest's fixture in a folder without ``__init__.py`` lives that long), so
it only cleans up what that test did not.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_head import free_port, ray_head
from server_process import API_KEY, RAY_ENV, Server, write_config


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    config = write_config(folder)
    with contextlib.ExitStack() as stack:
        address, _ = stack.enter_context(ray_head(RAY_ENV))
        port = free_port()
        log = folder / "server.log"
        env = os.environ | RAY_ENV | {"SLM_AGENTS_API_KEY": API_KEY}
        command = str(Path(sys.executable).parent / "slm-agents")
        cli = [command, "serve", str(config), "--port", str(port), "--address", address]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                cli, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=folder
            )
        stack.callback(lambda: process.poll() is None and process.kill())
        running = Server(f"http://127.0.0.1:{port}/v1", process, log, ray_address=address,
                         close_cluster=stack.close)  # fmt: skip
        deadline = time.monotonic() + 300
        while "serving" not in running.output():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"slm-agents serve did not start:\n{running.output()[-4000:]}")
            time.sleep(1)
        yield running

"""A real one-node Ray cluster from ``ray start --head --block``, for tests of ``--address``.

Interrupting the ``--block`` process stops that head and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ray_head(env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """(address, temp dir) of a fresh head with 2 logical CPUs, workers not niced (as our own
    local clusters run them: niced replicas measured ~50% slower beside a busy neighbour)."""
    # Ray's socket paths must stay under ~107 characters: a short dir, not pytest's tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="rayhead", dir="/tmp"))
    port = free_port()
    log = temp / "head.log"
    env = {k: v for k, v in (os.environ | (env or {})).items() if k != "RAY_ADDRESS"}
    with log.open("w") as sink:
        head = subprocess.Popen(
            [BIN / "ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
             "--system-config=" + json.dumps({"worker_niceness": 0})],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp
    finally:
        # SIGINT, not SIGTERM: with Serve's detached actors on it, the head ignored SIGTERM
        # until the 30 s timeout below; on SIGINT it stops everything in about 2 s.
        head.send_signal(signal.SIGINT)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)

"""On a shared cluster a second ``slm-agents serve`` must not replace the first one's
application; the first keeps answering. (The package's last test, in ``test_under_faults.py``,
checks that SIGTERM takes down only our application and leaves the cluster up.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from ray_head import free_port
from server_process import RAY_ENV

pytestmark = pytest.mark.slow


def test_a_second_server_on_the_same_cluster_refuses_to_replace_the_first(server, tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("models:\n  - model: smollm2-135m-instruct\n")
    second = subprocess.run(
        [str(Path(sys.executable).parent / "slm-agents"), "serve", str(config),
         "--address", server.ray_address, "--port", str(free_port())],
        capture_output=True, text=True, timeout=180, env=os.environ | RAY_ENV,
    )  # fmt: skip
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    assert "already runs" in second.stdout + second.stderr
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=30)
    assert health.status_code == 200  # the first server is untouched

"""A simulated multi-node cluster (ray.cluster_utils.Cluster) loses the node hosting an agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_removing_a_node_mid_batch_loses_and_duplicates_nothing():
    script = Path(__file__).with_name("multinode_script.py")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report["task_ids"] == ["t0", "t1", "t2", "t3"]  # every request once, in order
    assert all(report["ok"]), report["errors"]
    assert report["nodes_changed"] and report["pid_after"] != report["pid_before"]

"""One local Ray cluster for all runtime tests (starting one costs seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    # Logical CPUs, more than the 2 real cores, so several small agents can be placed at once.
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

"""Shared fixtures: the real bundled models, loaded once per session, and a throwaway MLflow.

Models come from the default cache (~/.cache/slm-agents, or SLM_AGENTS_CACHE); a fresh machine
converts the GGUF once (~20 s). Tests that exercise conversion itself use a temporary cache.
"""

from __future__ import annotations

import pytest

from slm_agents import tracking
from slm_agents.models.sources import BUNDLED, bundled_path


def _require_bundled(name: str) -> None:
    if bundled_path(BUNDLED[name]) is None:
        pytest.fail(
            f"bundled model {name} is missing: {BUNDLED[name].install} (make setup does it)"
        )


@pytest.fixture(scope="session")
def slm():
    """The default SLM (SmolLM2-135M-Instruct), shared: tests must not load adapters on it."""
    _require_bundled("smollm2-135m-instruct")
    from slm_agents.models import CausalLM

    return CausalLM(device="cpu")


@pytest.fixture(scope="session")
def departments():
    return {
        "cards": "bank card delivery, activation, PIN, lost or stolen cards",
        "transfers": "bank transfers, sending money to someone, transfer failed or pending",
        "account": "account details, identity verification, closing the account",
    }


@pytest.fixture(scope="session")
def router(departments):
    _require_bundled("all-minilm-l6-v2")
    from slm_agents.models import EncoderClassifier

    return EncoderClassifier(labels=departments, device="cpu")


@pytest.fixture
def mlflow_store(tmp_path):
    """Point the default tracker at a fresh sqlite store; restore a pristine tracker after."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = tracking.configure(uri, experiment="tests")
    yield tracker
    tracking.disable()
    tracking.configure()

"""The tracking store holds redacted text by default, whoever sends what: a model-call span of a
local endpoint (sent as it is) keeps no e-mail address, params neither; ``store_raw`` keeps it."""

from __future__ import annotations

import openai_fault_server
import pytest

from slm_agents import tracking
from slm_agents.models import OpenAIEndpoint

fault_server = openai_fault_server.fault_server
EMAIL = "olivia.nguyen@example.net"
PROMPT = f"Hi, this is Olivia Nguyen ({EMAIL}); my card was declined."


def store_bytes(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("store_raw", [False, True])
def test_model_call_spans_and_params_store_redacted_text_unless_raw_is_asked_for(
    fault_server, tmp_path, store_raw
):
    import mlflow

    tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}", "stored", store_raw=store_raw)
    tracking.enable()
    try:
        with tracking.run("notebook", params={"example": PROMPT}):
            gens = OpenAIEndpoint(fault_server.base_url, "gpt-4o-mini").generate([PROMPT])
        tracking.flush()
        mlflow.flush_trace_async_logging()
    finally:
        tracking.disable()
        tracking.configure()
    assert EMAIL in fault_server.posts()[0].text  # a loopback endpoint: sent as it is
    assert EMAIL in gens[0].text  # the echo, to the caller unchanged
    stored = store_bytes(tmp_path)
    assert b"declined" in stored  # the span and the param were written
    assert (EMAIL.encode() in stored) is store_raw
    assert (b"Olivia Nguyen" in stored) is store_raw
    assert (b"<EMAIL_1>" in stored) is not store_raw

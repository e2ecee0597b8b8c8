"""Tracking against a real MLflow sqlite store: runs, params, metrics, traces, failing open."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import warnings

import pytest
from pydantic import BaseModel

from slm_agents import tracking
from slm_agents.result import Result, Step, Task
from slm_agents.tracking import TrackingWarning, flatten
from slm_agents.tracking.failures import mask_secrets


def test_flatten_makes_dotted_params():
    from slm_agents.models import GenerationOptions

    flat = flatten({"model": "m", "options": GenerationOptions(max_new_tokens=8)})
    assert flat["model"] == "m" and flat["options.max_new_tokens"] == "8"


def test_run_logs_params_metrics_and_one_trace_per_model_call(mlflow_store, slm, router, tmp_path):
    import mlflow

    with tracking.run("unit", params={"options": {"max_new_tokens": 4}}) as run_id:
        assert run_id
        slm.generate(["Hello", ""], max_new_tokens=4)
        router.predict(["my card is lost"])
        for step in range(250):  # more than one buffered batch
            tracking.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        report = tmp_path / "report.txt"
        report.write_text("confusion summary")
        tracking.log_artifact(report, "reports")

    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["options.max_new_tokens"] == "4"
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    assert len(history) == 250
    [artifact] = mlflow.MlflowClient().list_artifacts(run_id, "reports")
    assert artifact.path == "reports/report.txt"

    traces = mlflow.search_traces(run_id=run_id, return_type="list")
    assert len(traces) == 2
    by_name = {t.data.spans[0].name: t for t in traces}
    spans = {name: t.data.spans[0] for name, t in by_name.items()}
    gen_span = spans["smollm2-135m-instruct.generate"]
    usage = gen_span.attributes["mlflow.chat.tokenUsage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] > 10
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # MLflow sums the span attribute into the trace's own token usage (the Traces page column)
    assert by_name["smollm2-135m-instruct.generate"].info.token_usage == usage
    assert gen_span.attributes["n_errors"] == 1
    assert set(gen_span.outputs[0]) == {"output", "confidence"}
    assert gen_span.outputs[1] == {"error": "request 1: prompt is empty"}
    assert gen_span.inputs["inputs"] == ["Hello", ""]
    assert gen_span.inputs["options"]["max_new_tokens"] == 4
    assert spans["all-minilm-l6-v2.predict"].outputs[0]["output"] == "cards"
    # artifacts sit beside the database, not in ./mlruns of the working directory
    assert list((tmp_path / "mlartifacts").rglob("report.txt"))


def test_failed_body_marks_the_run_failed(mlflow_store):
    import mlflow

    with pytest.raises(RuntimeError), tracking.run("boom") as run_id:
        raise RuntimeError("boom")
    assert mlflow.get_run(run_id).info.status == "FAILED"


def test_a_run_inside_a_run_is_a_nested_run(mlflow_store):
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        with tracking.run("benchmark") as outer:
            tracking.log_metrics({"before": 1.0})
            with tracking.run("training") as inner:
                tracking.log_metrics({"loss": 0.5})
            tracking.log_metrics({"after": 2.0})
    assert inner and inner != outer
    assert mlflow.get_run(inner).data.tags["mlflow.parentRunId"] == outer
    assert mlflow.get_run(inner).data.metrics == {"loss": 0.5}
    assert mlflow.get_run(outer).data.metrics == {"before": 1.0, "after": 2.0}
    assert mlflow.get_run(outer).info.status == "FINISHED"


def test_broken_store_warns_once_and_work_goes_on(tmp_path, slm):
    bad = tmp_path / "not-a-database.db"
    bad.write_text("garbage " * 100)
    tracking.configure(f"sqlite:///{bad}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with tracking.run("x") as run_id:
                [gen] = slm.generate(["Hi"], max_new_tokens=3)
                tracking.log_metrics({"a": 1.0})
            with tracking.run("y"):
                pass
        assert run_id is None
        assert gen.ok
        ours = [w for w in caught if issubclass(w.category, TrackingWarning)]
        assert len(ours) == 1
        message = str(ours[0].message)  # names the store and the cause
        assert "not-a-database.db" in message
        assert "DatabaseError" in message and "file is not a database" in message
    finally:
        tracking.configure()


def test_unreachable_server_fails_open_in_seconds(slm):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracking.configure(f"http://tracker:s3cret-token@127.0.0.1:{port}")
    try:
        start = time.monotonic()
        with pytest.warns(TrackingWarning) as caught, tracking.run("x") as run_id:
            [gen] = slm.generate(["Hi"], max_new_tokens=3)
        assert run_id is None and gen.ok
        assert time.monotonic() - start < 60
        [warning] = [w for w in caught if issubclass(w.category, TrackingWarning)]
        message = str(warning.message)
        assert f"127.0.0.1:{port}" in message and "MlflowException" in message
        assert "Connection refused" in message or "ConnectionError" in message
        assert "s3cret-token" not in message  # the password in the URI is masked
    finally:
        tracking.configure()


def test_mask_secrets_hides_credentials_but_keeps_where():
    text = (
        "API request to https://me:pw123@mlflow.example.com/api?x=1&access_token=abc123 failed; "
        "header Authorization: Bearer eyJhbGciOi.payload"
    )
    masked = mask_secrets(text)
    assert "pw123" not in masked and "abc123" not in masked and "eyJhbGciOi" not in masked
    assert "https://***@mlflow.example.com/api?x=1&access_token=***" in masked


def test_a_bug_in_tracking_code_raises_and_tracking_stays_on(mlflow_store):
    import mlflow

    with tracking.run("bug") as run_id:
        # a backend handing the span raw strings instead of Generation/Prediction results
        with (
            pytest.raises(AttributeError),
            tracking.model_call("m", "generate", ["hi"]) as span,
        ):
            span.record(["not a Generation"])
        with pytest.raises(TypeError):
            mlflow_store.fail_open(lambda: len(3))
        tracking.log_metrics({"after_the_bug": 1.0})
    assert not mlflow_store.broken
    assert mlflow.get_run(run_id).data.metrics == {"after_the_bug": 1.0}


class Routing(BaseModel):
    intent: str | None
    department: str


@dataclasses.dataclass
class Reply:
    text: str
    tokens: int


def test_trace_results_writes_json_spans_and_token_usage(mlflow_store):
    import mlflow

    t = time.time()
    router = Routing(intent=None, department="cards")
    reply = Reply("Your new card is on its way.", 7)
    steps = [
        Step("router", router, model="all-minilm-l6-v2", prompt_tokens=5, cost=0.001,
             start_s=t, end_s=t + 0.1, kind="classifier"),
        Step("writer", reply, model="smollm2-135m-instruct", prompt_tokens=20,
             completion_tokens=7, cost=0.002, start_s=t + 0.1, end_s=t + 0.3, kind="llm"),
        Step("checker", None, start_s=t + 0.3, end_s=t + 0.31, error="no policy matched"),
    ]  # fmt: skip
    result = Result("t1", output={"reply": reply}, path=steps)
    with tracking.run("traced") as run_id:
        tracking.trace_results([result], [Task("my card is lost", id="t1")])

    [found] = mlflow.search_traces(run_id=run_id, return_type="list")
    trace = mlflow.MlflowClient().get_trace(result.trace_id)
    assert trace.info.trace_id == found.info.trace_id
    assert trace.info.token_usage == {"input_tokens": 25, "output_tokens": 7, "total_tokens": 32}
    spans = {s.name: s for s in trace.data.spans}
    # the stored attribute is a JSON object, not a JSON string holding a Python repr
    stored = {
        name: json.loads(spans[name].to_dict()["attributes"]["mlflow.spanOutputs"])
        for name in ("request", "router", "writer")
    }
    assert stored["router"] == {"intent": None, "department": "cards"}
    assert stored["writer"] == {"text": "Your new card is on its way.", "tokens": 7}
    assert stored["request"] == {
        "output": {"reply": {"text": "Your new card is on its way.", "tokens": 7}},
        "error": None,
    }
    assert spans["request"].inputs == {"task": "my card is lost"}
    assert spans["writer"].attributes["cost"] == 0.002  # our own cost attribute stays
    assert spans["writer"].attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "total_tokens": 27,
    }
    assert spans["checker"].status.status_code == "ERROR"
    assert spans["checker"].status.description == "no policy matched"


def test_model_calls_without_a_run_are_not_traced(slm):
    assert not tracking.get_tracker().active
    slm.generate(["Hi"], max_new_tokens=2)  # nothing to assert but that no store is touched
    assert not tracking.get_tracker()._ready


def test_importing_the_packages_stays_light():
    code = (
        "import sys, slm_agents, slm_agents.models, slm_agents.tracking, slm_agents.cli\n"
        "import slm_agents.finetune, slm_agents.agent, slm_agents.patterns, slm_agents.runtime\n"
        "import slm_agents.result, slm_agents.pricing, slm_agents.serve\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'ray') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

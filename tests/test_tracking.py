"""Tracking against a real MLflow sqlite store: runs, params, metrics, traces, failing open."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings

import pytest
from slm_agents import tracking
from slm_agents.tracking import TrackingWarning, flatten


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
    spans = {t.data.spans[0].name: t.data.spans[0] for t in traces}
    gen_span = spans["smollm2-135m-instruct.generate"]
    usage = gen_span.attributes["mlflow.chat.tokenUsage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] > 10
    assert gen_span.attributes["n_errors"] == 1
    assert gen_span.outputs[1] == {"error": "request 1: prompt is empty"}
    assert gen_span.inputs["inputs"] == ["Hello", ""]
    assert spans["all-minilm-l6-v2.predict"].outputs[0]["output"] == "cards"
    # artifacts sit beside the database, not in ./mlruns of the working directory
    assert list((tmp_path / "mlartifacts").rglob("report.txt"))


def test_failed_body_marks_the_run_failed(mlflow_store):
    import mlflow

    with pytest.raises(RuntimeError), tracking.run("boom") as run_id:
        raise RuntimeError("boom")
    assert mlflow.get_run(run_id).info.status == "FAILED"


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
        assert len(ours) == 1 and "not-a-database.db" in str(ours[0].message)
    finally:
        tracking.configure()


def test_unreachable_server_fails_open_in_seconds(slm):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracking.configure(f"http://127.0.0.1:{port}")
    try:
        start = time.monotonic()
        with pytest.warns(TrackingWarning, match=f"127.0.0.1:{port}"), tracking.run("x") as run_id:
            [gen] = slm.generate(["Hi"], max_new_tokens=3)
        assert run_id is None and gen.ok
        assert time.monotonic() - start < 60
    finally:
        tracking.configure()


def test_model_calls_without_a_run_are_not_traced(slm):
    assert not tracking.get_tracker().active
    slm.generate(["Hi"], max_new_tokens=2)  # nothing to assert but that no store is touched
    assert not tracking.get_tracker()._ready


def test_importing_the_packages_stays_light():
    code = (
        "import sys, slm_agents, slm_agents.models, slm_agents.tracking, slm_agents.cli\n"
        "import slm_agents.finetune, slm_agents.agent, slm_agents.patterns, slm_agents.runtime\n"
        "import slm_agents.result, slm_agents.pricing\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'ray') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

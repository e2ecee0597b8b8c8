"""The slm-agents CLI, run in-process with typer's runner on the real models."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from slm_agents import tracking
from slm_agents.cli import app

runner = CliRunner()


def json_lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_models_lists_the_embedded_models():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.output)}
    slm = models["smollm2-135m-instruct"]
    assert slm["installed"] and 130e6 < slm["parameters"] < 140e6 and slm["size_bytes"] > 50e6
    assert 20e6 < models["all-minilm-l6-v2"]["parameters"] < 25e6
    assert 250e6 < models["gemma-3-270m"]["parameters"] < 300e6
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "smollm2-135m-instruct" in table.output


def test_generate_prints_json_lines():
    result = runner.invoke(
        app, ["generate", "What is the capital of France?", "", "--max-new-tokens", "8", "--json"]
    )
    lines = json_lines(result)
    assert "Paris" in lines[0]["text"] and lines[0]["completion_tokens"] <= 8
    assert "prompt is empty" in lines[1]["error"]
    assert result.exit_code == 1  # one request failed, and the exit code says so


def test_generate_with_a_schema(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"],
                "additionalProperties": False,
            }
        )
    )
    result = runner.invoke(
        app, ["generate", "Name a city.", "--json-schema", str(schema), "--json"]
    )
    assert result.exit_code == 0, result.output
    [line] = json_lines(result)
    assert set(line["parsed"]) == {"city"}


def test_generate_reads_prompts_from_a_file(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi.\n\nSay bye.\n")
    result = runner.invoke(
        app, ["generate", "--file", str(prompts), "--max-new-tokens", "4", "--json"]
    )
    assert result.exit_code == 0 and len(json_lines(result)) == 2


def test_classify_zero_shot(tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("cards: lost or stolen bank cards\ntransfers: sending money\n")
    result = runner.invoke(
        app, ["classify", "my card was stolen", "--labels", str(labels), "--json"]
    )
    assert result.exit_code == 0, result.output
    [line] = json_lines(result)
    assert line["label"] == "cards" and set(line["probabilities"]) == {"cards", "transfers"}
    table = runner.invoke(app, ["classify", "my card was stolen", "--labels", "cards,transfers"])
    assert table.exit_code == 0 and "cards" in table.output


def test_clear_errors_for_bad_usage():
    assert "nothing to process" in runner.invoke(app, ["generate"]).output
    unknown = runner.invoke(app, ["generate", "hi", "--model", "no-such-model"])
    assert unknown.exit_code == 2 and "unknown model 'no-such-model'" in unknown.output
    no_labels = runner.invoke(app, ["classify", "hi"])
    assert no_labels.exit_code == 2 and "pass labels=" in no_labels.output


def test_demo_runs_and_logs_to_mlflow(mlflow_store):
    import mlflow

    result = runner.invoke(app, ["demo", "--tickets", "6", "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "routing_accuracy" in result.output and "receipt_json_valid" in result.output
    [run] = mlflow.search_runs(experiment_names=["tests"], output_format="list")
    assert run.data.metrics["receipt_json_valid"] == 1.0
    assert 0.0 <= run.data.metrics["routing_accuracy"] <= 1.0
    assert len(mlflow.search_traces(run_id=run.info.run_id, return_type="list")) == 3
    tracking.configure()


def test_every_command_is_registered_and_cli_run_knows_no_app():
    """``run`` and ``serve`` live in cli_run / cli_serve as plain functions that cli registers;
    nothing imports back."""
    import slm_agents.cli_run
    import slm_agents.cli_serve

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    assert names == {"run", "serve", "models", "generate", "classify", "demo"}
    assert groups == {"finetune", "compress", "evaluate", "flywheel"}
    assert not hasattr(slm_agents.cli_run, "app") and not hasattr(slm_agents.cli_serve, "app")
    usage = runner.invoke(app, ["run", "--help"])
    assert usage.exit_code == 0 and "--input" in usage.output and "--address" in usage.output

"""`slm-agents finetune classifier` and `evaluate classifier` as other tools script them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from slm_agents.cli import app

runner = CliRunner()


def test_finetune_then_evaluate_writes_the_promised_json(
    tickets_train, tickets_test, write_csv, tmp_path
):
    train_csv, test_csv = write_csv(tickets_train, "train.csv"), write_csv(tickets_test, "test.csv")
    out = tmp_path / "router"
    trained = runner.invoke(
        app,
        [
            "finetune", "classifier", "--data", str(train_csv), "--text-column", "text",
            "--label-column", "intent", "--output", str(out), "--epochs", "1", "--rank", "4",
            "--no-track", "--json", str(tmp_path / "train.json"),
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    facts = json.loads((tmp_path / "train.json").read_text())
    assert facts["labels"] == 4 and facts["steps"] > 0 and (out / "classifier.json").exists()

    scored = runner.invoke(
        app,
        [
            "evaluate", "classifier", str(out), "--data", str(test_csv), "--text-column", "text",
            "--label-column", "intent", "--json", str(tmp_path / "eval.json"),
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 40 and 0.5 <= result["accuracy"] <= 1.0
    assert "accuracy" in scored.output


def test_a_missing_column_names_the_columns_that_exist(tickets_train, write_csv, tmp_path):
    train_csv = write_csv(tickets_train)
    result = runner.invoke(
        app,
        ["finetune", "classifier", "--data", str(train_csv), "--label-column", "category",
         "--output", str(tmp_path / "x")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no column 'category'" in result.output and "'intent'" in result.output

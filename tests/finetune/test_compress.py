"""int8 quantization and pruning of a trained router: smaller, stated sparsity, still loads."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.finetune.compress import linear_sparsity, prune, quantize
from slm_agents.models import EncoderClassifier


def test_int8_is_smaller_and_keeps_its_answers(trained_router, tickets_test, tmp_path):
    _, source = trained_router
    report = quantize(source, tmp_path / "int8", data=tickets_test)
    assert report["bytes_after"] < 0.7 * report["bytes_before"]  # embeddings stay float
    assert abs(report["accuracy_after"] - report["accuracy_before"]) <= 0.05
    loaded = EncoderClassifier(str(tmp_path / "int8"))
    assert json.loads((tmp_path / "int8" / "classifier.json").read_text())["encoder"] == "int8"
    assert any("quantized" in type(m).__module__ for m in loaded.model.modules())


def test_magnitude_pruning_reaches_the_stated_sparsity(trained_router, tickets_test, tmp_path):
    _, source = trained_router
    report = prune(source, tmp_path / "sparse", method="magnitude", amount=0.4, data=tickets_test)
    assert report["sparsity_after"] == pytest.approx(0.4, abs=0.01)
    assert report["zlib_bytes_after"] < report["zlib_bytes_before"]
    reloaded = EncoderClassifier(str(tmp_path / "sparse"))
    assert linear_sparsity(reloaded.model.encoder) == pytest.approx(0.4, abs=0.01)


def test_channel_pruning_shrinks_the_matrices_and_recovery_keeps_them(
    trained_router, tickets_train, tmp_path
):
    _, source = trained_router
    report = prune(
        source, tmp_path / "thin", method="mlp-channels", amount=0.5, recover=tickets_train,
        recover_minutes=0.2, progress=False,
    )  # fmt: skip
    assert report["parameters_after"] < 0.85 * report["parameters_before"]
    assert report["recovery"]["steps"] > 0
    thin = EncoderClassifier(str(tmp_path / "thin"))
    assert thin.model.encoder.config.intermediate_size == 768  # 1536 channels, half kept
    assert thin.predict(["my card has not arrived yet"])[0].error is None


def test_magnitude_recovery_keeps_the_zeros(trained_router, tickets_train, tmp_path):
    _, source = trained_router
    prune(
        source, tmp_path / "sparse", method="magnitude", amount=0.3, recover=tickets_train,
        recover_minutes=0.1, progress=False,
    )  # fmt: skip
    model = EncoderClassifier(str(tmp_path / "sparse")).model
    assert linear_sparsity(model.encoder) >= 0.29
    assert not torch.isnan(model.head.weight).any()


def test_bad_requests_are_named(trained_router, tmp_path):
    _, source = trained_router
    with pytest.raises(ValueError, match="unknown pruning method 'heads'"):
        prune(source, tmp_path / "x", method="heads")
    with pytest.raises(ValueError, match="amount must be between 0 and 1"):
        prune(source, tmp_path / "x", amount=1.5)
    quantize(source, tmp_path / "int8")
    with pytest.raises(ValueError, match="compress needs a float classifier"):
        quantize(tmp_path / "int8", tmp_path / "twice")


def test_cli_quantize_writes_a_report(trained_router, tmp_path):
    _, source = trained_router
    result = CliRunner().invoke(
        app,
        ["compress", "quantize", str(source), "--output", str(tmp_path / "q"),
         "--json", str(tmp_path / "q.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "q.json").read_text())["bytes_after"] > 0

"""LoRA classifier training on real BANKING77 slices: learns, saves, loads, resumes, tracked."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from training_slices import SMALL, SMALL_RUN

from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
from slm_agents.finetune.data import DataError, LabelledTexts
from slm_agents.finetune.evaluate import evaluate_classifier
from slm_agents.finetune.loop import TrainConfig
from slm_agents.models import EncoderClassifier


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{**SMALL_RUN.__dict__, **overrides})


def test_training_from_a_random_head_lowers_the_loss(tickets_train, tmp_path):
    settings = ClassifierSettings(**{**SMALL.__dict__, "prototype_init": False})
    result = train_classifier(
        tickets_train,
        tmp_path,
        settings=settings,
        config=config(epochs=3, learning_rate=0.02),
        progress=False,
        track=False,
    )
    losses = result.report.losses
    assert len(losses) == result.report.steps == 15  # 36 train rows in 5 batches, three epochs
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])
    assert result.accuracy > result.start_accuracy


def test_training_saves_a_loadable_adapter(trained_router, tickets_test):
    result, output = trained_router
    assert result.start_accuracy is not None and result.report.steps == 10
    for name in ("adapter_config.json", "adapter_model.safetensors", "head.safetensors"):
        assert (output / name).exists(), name
    meta = json.loads((output / "classifier.json").read_text())
    assert meta["labels"] == sorted(set(tickets_test.labels)) and meta["encoder"] == "lora"
    assert not (output / "checkpoint" / "checkpoint.pt").exists()  # finished: no stale checkpoint

    scores = evaluate_classifier(output, tickets_test, progress=False)
    assert scores["n"] == 40 and scores["accuracy"] >= 0.75  # 4 intents; chance is 0.25


def test_the_adapter_changes_what_the_encoder_computes(trained_router):
    _, output = trained_router
    lora_b = [
        v for k, v in load_file(output / "adapter_model.safetensors").items() if "lora_B" in k
    ]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero
    tuned = EncoderClassifier(str(output))
    base = EncoderClassifier(labels=tuned.labels)
    text = ["my card still has not arrived"]
    tuned_vec = tuned.model.embed(**tuned._tokenize(text))
    assert not torch.allclose(tuned_vec, base._embed(text), atol=1e-3)


def test_resumed_training_ends_where_an_uninterrupted_run_ends(
    tickets_train, trained_router, tmp_path
):
    result, full_output = trained_router
    output = tmp_path / "resumed"
    first = train_classifier(
        tickets_train,
        output,
        settings=SMALL,
        config=config(max_steps=5),
        progress=False,
        track=False,
    )
    assert first.report.stopped == "step-budget" and first.report.steps == 5
    assert (output / "checkpoint" / "checkpoint.pt").exists()
    second = train_classifier(
        tickets_train, output, settings=SMALL, config=config(), progress=False, track=False
    )
    assert second.report.resumed_from_step == 5 and second.report.steps == 10
    assert second.report.losses == result.report.losses
    head, full_head = (load_file(p / "head.safetensors") for p in (output, full_output))
    assert torch.allclose(head["weight"], full_head["weight"], atol=1e-5)


def test_other_settings_do_not_resume_a_checkpoint(tickets_train, tmp_path):
    train_classifier(
        tickets_train,
        tmp_path,
        settings=SMALL,
        config=config(max_steps=2),
        progress=False,
        track=False,
    )
    with pytest.raises(ValueError, match="learning_rate"):
        train_classifier(
            tickets_train,
            tmp_path,
            settings=SMALL,
            config=config(learning_rate=1e-4),
            progress=False,
            track=False,
        )


def test_a_time_budget_stops_training(tickets_train, tmp_path):
    result = train_classifier(
        tickets_train,
        tmp_path,
        settings=SMALL,
        config=config(max_minutes=1e-4),
        progress=False,
        track=False,
    )
    assert result.report.stopped == "time-budget" and result.report.steps == 1
    assert EncoderClassifier(str(tmp_path)).labels == result.labels  # still saved, still usable


def test_the_run_is_tracked_and_registered(tickets_train, tmp_path, mlflow_store):
    import mlflow
    from mlflow.tracking import MlflowClient

    result = train_classifier(
        tickets_train,
        tmp_path / "clf",
        settings=SMALL,
        config=config(epochs=1),
        progress=False,
        register_as="ticket-router",
    )
    assert result.model_version == "1"
    run = mlflow.search_runs(experiment_names=["tests"], output_format="list")[0]
    assert run.data.params["settings.rank"] == "4" and run.data.params["train_rows"] == "36"
    client = MlflowClient()
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert len(history) == 3  # the centroid start, epoch 1, and the saved model's accuracy
    assert history[-1] == result.accuracy
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion.json", "classifier"} <= artifacts
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "classifier")}
    assert "classifier/head.safetensors" in saved and "classifier/checkpoint" not in saved
    version = client.get_model_version("ticket-router", "1")
    assert version.run_id == run.info.run_id


def test_bad_training_data_is_named(tickets_train, tmp_path):
    one_class = LabelledTexts(["a", "b", "c"], ["x", "x", "x"], "one.csv")
    with pytest.raises(DataError, match="one.csv: only one class"):
        train_classifier(one_class, tmp_path, validation=one_class, progress=False, track=False)
    with pytest.raises(DataError, match="empty.csv: no rows"):
        train_classifier(LabelledTexts([], [], "empty.csv"), tmp_path, track=False)
    odd = LabelledTexts(["where is my card"], ["card_delivery"], "val.csv")
    with pytest.raises(DataError, match="val.csv: labels not in the training data"):
        train_classifier(tickets_train, tmp_path, validation=odd, progress=False, track=False)


def test_a_corrupted_adapter_directory_is_named(trained_router, tmp_path):
    _, output = trained_router
    broken = shutil.copytree(output, tmp_path / "broken")
    (broken / "adapter_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="cannot load the lora classifier in .*broken"):
        EncoderClassifier(str(broken))
    (broken / "classifier.json").write_text("{")
    with pytest.raises(ValueError, match="classifier.json is not readable JSON"):
        EncoderClassifier(str(broken))

"""The shared training loop on a toy model: early stopping restores the best weights."""

from __future__ import annotations

import pytest
import torch

from slm_agents.finetune.loop import TrainConfig, fit


def test_early_stopping_keeps_the_best_epoch():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    scores = iter([0.7, 0.6, 0.5, 0.4])  # validation gets worse after the first epoch
    snapshots = []

    def validate():
        snapshots.append(model.weight.detach().clone())
        return {"accuracy": next(scores)}

    report = fit(
        model,
        batches=lambda epoch: [list(range(i, i + 8)) for i in range(0, 32, 8)],
        loss=lambda rows: torch.nn.functional.cross_entropy(model(x[rows]), y[rows]),
        config=TrainConfig(epochs=4, patience=1, learning_rate=0.1, warmup_steps=1),
        validate=validate,
        progress=False,
    )
    assert report.stopped == "early-stopping"
    assert report.epochs_run == 3 and report.best_epoch == 1 and report.best_metric == 0.7
    assert torch.equal(model.weight, snapshots[0])  # epoch 1's weights are back
    assert not torch.equal(snapshots[0], snapshots[2])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, batches=lambda e: [[0]], loss=lambda b: 0, config=TrainConfig(), progress=False)


def test_an_unreadable_checkpoint_is_named_and_keeps_its_cause(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable checkpoint") as err:
        fit(
            model,
            batches=lambda epoch: [[0]],
            loss=lambda rows: model(torch.ones(1, 2)).sum(),
            config=TrainConfig(),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    assert err.value.__cause__ is not None  # torch's own reason, for whoever debugs it

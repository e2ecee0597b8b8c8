"""The one training loop every recipe uses: budget, early stopping, checkpoints, resume, progress.

Why one loop: classifier LoRA, SFT, distillation and pruning recovery all need the same care on a
2-core machine. A recipe supplies three things: the batches of an epoch (a deterministic function
of the epoch number, so a resumed run sees the same order), a loss for one batch, and an optional
validation function. The loop does the rest:

* AdamW on the trainable parameters only, linear warm-up then linear decay;
* a ``tqdm.auto`` bar (a widget in Jupyter) showing the loss;
* validation after each epoch, keeping the best weights, early stopping after ``patience``
  epochs without improvement, and the best weights restored at the end;
* ``max_minutes`` / ``max_steps`` budgets that stop cleanly;
* a resumable checkpoint (trainable weights, optimizer, schedule, RNG, position in the epoch)
  every ``checkpoint_minutes``, at every epoch end, at a budget stop and on Ctrl-C. Starting the
  same recipe with the same output directory continues from it; different settings are refused.

Why these two are ours rather than a library's:

* The schedule is torch's ``LambdaLR`` with our factor ``min(1, (step + 1) / warmup) *
  (1 - step / total)``. transformers' ``get_linear_schedule_with_warmup`` is not the same
  curve: its first step has learning rate 0 (a wasted step; with ``warmup_steps=1`` a one-step
  run would not train at all) and it decays only after the warm-up. Switching would change every
  recorded training result for no gain we could measure.
* The checkpoint resumes *mid-epoch* to the exact batch: the recipe's batch order is a function
  of (seed, epoch), and the checkpoint holds the position in the epoch, the best weights so far,
  the early-stopping count and the loss history besides weights, optimizer, schedule and RNG.
  A resumed run reproduces the uninterrupted run's losses exactly
  (``tests/finetune/test_classifier_training.py``). transformers' checkpointing comes with its
  ``Trainer``, which these recipes do not use (one small loop serves four recipes with their own
  losses), and accelerate's ``save_state`` would still need the epoch position, best weights and
  early-stopping state added by hand: about the code it would replace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_agents import tracking

CHECKPOINT_DIR = "checkpoint"  # recipes keep it inside their output directory
CHECKPOINT_FILE = "checkpoint.pt"
# Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"max_minutes", "max_steps", "checkpoint_minutes", "threads"}


@dataclass
class TrainConfig:
    """Loop settings. ``max_minutes`` bounds the whole training, including the time spent before
    an interruption: to continue a run stopped by its budget, raise it."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    seed: int = 0
    max_minutes: float | None = None
    max_steps: int | None = None
    patience: int = 1
    checkpoint_minutes: float = 2.0
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "max_minutes": self.max_minutes is None or self.max_minutes > 0,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "patience": self.patience >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ValueError(f"invalid training settings: {values}")


@dataclass
class TrainReport:
    steps: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    stopped: str = "completed"  # completed | early-stopping | time-budget | step-budget
    best_epoch: int | None = None
    best_metric: float | None = None
    resumed_from_step: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def fit(
    model: Any,
    *,
    batches: Callable[[int], Sequence[Any]],
    loss: Callable[[Any], Any],
    config: TrainConfig,
    validate: Callable[[], dict[str, float]] | None = None,
    metric: str = "accuracy",
    checkpoint_dir: str | Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    description: str = "train",
    progress: bool = True,
) -> TrainReport:
    """Train ``model``'s parameters that require grad; returns what happened.

    ``validate`` returns metrics including ``metric`` (higher is better). ``fingerprint`` holds the
    recipe's own settings (data, model, rank...) so a checkpoint is only resumed by the same run.
    """
    import torch
    from tqdm.auto import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(
        trainable.values(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(batches(0))
    if steps_per_epoch == 0:
        raise ValueError("no training batches: the training data is empty")
    total_steps = steps_per_epoch * config.epochs

    def schedule(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        return warm * max(0.0, 1.0 - step / total_steps)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    settings = {**_settings(config), **(fingerprint or {})}
    state = _State()
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    report = TrainReport()
    if path is not None and path.exists():
        state = _load(path, settings, trainable, optimizer, scheduler)
        report.resumed_from_step = state.step
    report.history, report.losses = state.history, state.losses

    started = time.monotonic() - state.seconds
    last_save = time.monotonic()

    def save() -> None:
        nonlocal last_save
        state.seconds = time.monotonic() - started
        if path is not None:
            _save(path, settings, state, trainable, optimizer, scheduler)
        last_save = time.monotonic()

    bar = tqdm(total=total_steps, initial=state.step, desc=description, disable=not progress)
    model.train()
    stopped = None
    try:
        while state.epoch < config.epochs and stopped is None:
            epoch_batches = batches(state.epoch)
            for index in range(state.batch_in_epoch, len(epoch_batches)):
                value = loss(epoch_batches[index])
                value.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch_in_epoch = index + 1
                state.losses.append(round(float(value.detach()), 5))
                bar.update(1)
                bar.set_postfix(loss=f"{state.losses[-1]:.3f}", refresh=False)
                if state.step % 20 == 0:
                    tracking.log_metrics({"train_loss": _mean(state.losses[-20:])}, state.step)
                elapsed = time.monotonic() - started
                if config.max_minutes is not None and elapsed >= config.max_minutes * 60:
                    stopped = "time-budget"
                elif config.max_steps is not None and state.step >= config.max_steps:
                    stopped = "step-budget"
                if stopped:
                    break
                if time.monotonic() - last_save >= config.checkpoint_minutes * 60:
                    save()
            if state.batch_in_epoch >= len(epoch_batches):
                state.epoch += 1
                state.batch_in_epoch = 0
                if _end_of_epoch(model, state, validate, metric, config, trainable, index + 1):
                    stopped = stopped or "early-stopping"
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        raise
    bar.close()
    if stopped in ("time-budget", "step-budget"):
        save()  # resumable from exactly here
    elif path is not None and path.exists():
        path.unlink()  # finished: the saved model is the result, the checkpoint is stale
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only if empty
    if state.best_state is not None:
        with torch.no_grad():
            for name, tensor in state.best_state.items():
                trainable[name].copy_(tensor)
    model.eval()
    report.steps, report.epochs_run = state.step, state.epoch
    report.seconds = round(time.monotonic() - started, 2)
    report.stopped = stopped or "completed"
    report.best_epoch, report.best_metric = state.best_epoch, state.best_metric
    return report


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def _end_of_epoch(model, state, validate, metric, config, trainable, epoch_steps) -> bool:
    """Validate, keep the best weights; True when early stopping says stop."""
    record: dict[str, float] = {
        "epoch": state.epoch,
        "train_loss": _mean(state.losses[-epoch_steps:]),
    }
    if validate is None:
        state.history.append(record)
        tracking.log_metrics({"epoch_train_loss": record["train_loss"]}, state.step)
        return False
    model.eval()
    scores = validate()
    model.train()
    if metric not in scores:
        raise KeyError(f"validate() returned {sorted(scores)}, not {metric!r}")
    record.update({f"val_{k}": float(v) for k, v in scores.items()})
    state.history.append(record)
    tracking.log_metrics({k: v for k, v in record.items() if k != "epoch"}, state.step)
    if state.best_metric is None or scores[metric] > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_epochs = scores[metric], state.epoch, 0
        state.best_state = {k: p.detach().clone() for k, p in trainable.items()}
        return False
    state.bad_epochs += 1
    return state.bad_epochs > config.patience


def _settings(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_CHANGES}


def _save(path, settings, state, trainable, optimizer, scheduler) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": json.dumps(settings, sort_keys=True, default=str),
        "state": dataclasses.asdict(state),
        "weights": {k: p.detach().clone() for k, p in trainable.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def _load(path, settings, trainable, optimizer, scheduler) -> _State:
    import torch

    try:
        payload = torch.load(path, weights_only=False)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a readable checkpoint ({exc}); delete it to start again"
        ) from exc
    saved = json.loads(payload["settings"])
    now = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if saved != now:
        changed = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now)}
        changed = {k: v for k, v in changed.items() if v[0] != v[1]}
        raise ValueError(
            f"{path} was written by a run with other settings {changed} (saved, now); use the "
            "same settings to resume, or delete the checkpoint to start again"
        )
    with torch.no_grad():
        for name, tensor in payload["weights"].items():
            trainable[name].copy_(tensor)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate(payload["rng"]["python"])
    return _State(**payload["state"])


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 5) if values else float("nan")

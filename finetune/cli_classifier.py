"""Classifier commands: ``finetune classifier|distill``, ``evaluate classifier``,
``compress quantize|prune``.

Plain functions; :mod:`slm_agents.finetune.cli` registers them on its Typer apps. Heavy imports
happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

from slm_agents.console import fail, quiet_transformers
from slm_agents.finetune.cli_common import (
    DATA_HELP,
    load_labelled_or_fail,
    load_optional,
    print_summary,
)


def finetune_classifier(
    data: Path = typer.Option(..., help=f"Training data. {DATA_HELP}"),
    output: Path = typer.Option(..., help="Directory for the trained classifier."),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("label"),
    base: str = typer.Option("all-minilm-l6-v2", help="Encoder: bundled name, path or hub id."),
    validation_data: Path = typer.Option(
        None, help="Validation file; default: a stratified 10% of --data."
    ),
    epochs: int = typer.Option(2, min=1),
    batch_size: int = typer.Option(32, min=1),
    learning_rate: float = typer.Option(2e-3),
    rank: int = typer.Option(16, min=1, help="LoRA rank."),
    max_length: int = typer.Option(64, min=8, help="Tokens per text; longer ones are cut."),
    max_minutes: float = typer.Option(
        None, help="Stop after this many minutes of training in all (raise it to resume)."
    ),
    max_steps: int = typer.Option(None, help="Stop after this many optimizer steps."),
    seed: int = typer.Option(0),
    track: bool = typer.Option(True, help="Log the run to MLflow."),
    json_out: Path = typer.Option(None, "--json", help="Write the summary as JSON."),
):
    """LoRA fine-tune an encoder to classify texts; resumes from OUTPUT/checkpoint if present."""
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.data import DataError
    from slm_agents.finetune.loop import TrainConfig

    train = load_labelled_or_fail(data, text_column, label_column)
    validation = load_optional(validation_data, text_column, label_column)
    quiet_transformers()
    try:
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_minutes=max_minutes,
            max_steps=max_steps,
            seed=seed,
        )
        settings = ClassifierSettings(base=base, rank=rank, alpha=2 * rank, max_length=max_length)
        result = train_classifier(
            train, output, validation=validation, settings=settings, config=config, track=track
        )
    except (DataError, ValueError) as exc:
        raise fail(str(exc)) from exc
    print_summary(f"Classifier saved to {output}", result.summary(), json_out)


def evaluate_classifier_command(
    model: Path = typer.Argument(..., help="A classifier directory (from finetune classifier)."),
    data: Path = typer.Option(..., help=f"Labelled test data. {DATA_HELP}"),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("label"),
    json_out: Path = typer.Option(None, "--json", help="Write the results as JSON."),
):
    """Accuracy of a trained classifier on labelled data."""
    from slm_agents.finetune.data import DataError
    from slm_agents.finetune.evaluate import evaluate_classifier

    test = load_labelled_or_fail(data, text_column, label_column)
    quiet_transformers()
    try:
        facts = evaluate_classifier(model, test)
    except (DataError, ValueError) as exc:
        raise fail(str(exc)) from exc
    print_summary(f"{model} on {data}", facts, json_out)


def finetune_distill(
    data: Path = typer.Option(..., help=f"Training data. {DATA_HELP}"),
    teacher: str = typer.Option(
        ..., help="A classifier directory, or a JSONL of logged teacher outputs."
    ),
    output: Path = typer.Option(..., help="Directory for the student classifier."),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("label"),
    base: str = typer.Option("all-minilm-l6-v2", help="Student encoder."),
    layers: int = typer.Option(None, min=1, help="Keep only the first N encoder blocks."),
    temperature: float = typer.Option(2.0),
    alpha: float = typer.Option(0.5, help="Weight of the teacher's soft targets (0-1)."),
    epochs: int = typer.Option(2, min=1),
    max_minutes: float = typer.Option(None),
    seed: int = typer.Option(0),
    track: bool = typer.Option(True),
    json_out: Path = typer.Option(None, "--json"),
):
    """Train a (smaller) student classifier on a teacher's probabilities plus the true labels."""
    from slm_agents.finetune.classifier import ClassifierSettings
    from slm_agents.finetune.data import DataError
    from slm_agents.finetune.distill import DistillSettings, distill_classifier
    from slm_agents.finetune.loop import TrainConfig

    train = load_labelled_or_fail(data, text_column, label_column)
    quiet_transformers()
    try:
        result = distill_classifier(
            train,
            output,
            teacher,
            settings=ClassifierSettings(base=base, layers=layers),
            config=TrainConfig(epochs=epochs, max_minutes=max_minutes, seed=seed),
            distill=DistillSettings(temperature=temperature, alpha=alpha),
            track=track,
        )
    except (DataError, ValueError) as exc:
        raise fail(str(exc)) from exc
    print_summary(f"Student saved to {output}", result.summary(), json_out)


def compress_quantize(
    model: Path = typer.Argument(..., help="A classifier directory."),
    output: Path = typer.Option(..., help="Directory for the int8 classifier."),
    data: Path = typer.Option(None, help="Labelled data to measure accuracy and speed on."),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("label"),
    json_out: Path = typer.Option(None, "--json"),
):
    """Dynamic int8 quantization (CPU): size, and with --data accuracy and speed, before/after."""
    from slm_agents.finetune.compress import quantize

    test = load_optional(data, text_column, label_column)
    quiet_transformers()
    try:
        report = quantize(model, output, data=test)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    print_summary(f"int8 classifier saved to {output}", report, json_out)


def compress_prune(
    model: Path = typer.Argument(..., help="A classifier directory."),
    output: Path = typer.Option(..., help="Directory for the pruned classifier."),
    method: str = typer.Option("magnitude", help="magnitude (unstructured) or mlp-channels."),
    amount: float = typer.Option(0.3, help="Share of weights or channels to remove (0-1)."),
    data: Path = typer.Option(None, help="Labelled data to measure accuracy and speed on."),
    recover_data: Path = typer.Option(None, help="Labelled data for a short recovery fine-tune."),
    recover_minutes: float = typer.Option(2.0),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("label"),
    json_out: Path = typer.Option(None, "--json"),
):
    """Prune a classifier, optionally fine-tune briefly to recover; report sparsity and size."""
    from slm_agents.finetune.compress import prune

    test = load_optional(data, text_column, label_column)
    recover = load_optional(recover_data, text_column, label_column)
    quiet_transformers()
    try:
        report = prune(
            model,
            output,
            method=method,
            amount=amount,
            data=test,
            recover=recover,
            recover_minutes=recover_minutes,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    print_summary(f"Pruned classifier saved to {output}", report, json_out)

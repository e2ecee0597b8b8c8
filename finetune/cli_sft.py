"""``slm-agents finetune sft|extractor|code`` and ``slm-agents evaluate extractor``.

Plain functions; :mod:`slm_agents.finetune.cli` registers them on its Typer apps. Like the
classifier commands: a summary table, ``--json OUT`` for other tools, heavy imports inside the
commands.
The three training commands share their options (the ``Annotated`` aliases below); each option
left unset keeps the recipe's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from slm_agents.console import fail, quiet_transformers
from slm_agents.finetune.cli_common import print_summary

BASE_HELP = "Causal model: bundled name, path or hub id; default smollm2-135m-instruct."
Output = Annotated[Path, typer.Option(help="Directory for the LoRA adapter and sft.json.")]
Base = Annotated[str | None, typer.Option(help=BASE_HELP)]
Epochs = Annotated[int | None, typer.Option(min=1, help="Default: the recipe's.")]
BatchSize = Annotated[int | None, typer.Option(min=1, help="Default: the recipe's.")]
LearningRate = Annotated[float | None, typer.Option(help="Default: the recipe's.")]
Rank = Annotated[int | None, typer.Option(min=1, help="LoRA rank (alpha = 2 x rank); default 16.")]
MaxLength = Annotated[
    int | None, typer.Option(min=16, help="Tokens per row; prompts are cut from the left.")
]
TopLayers = Annotated[
    int | None, typer.Option(min=1, help="LoRA only in the last N blocks (faster).")
]
MaxMinutes = Annotated[float | None, typer.Option(help="Stop training after this many minutes.")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")]
Seed = Annotated[int, typer.Option(help="Seed of LoRA's initial weights and batch order.")]
Track = Annotated[bool, typer.Option(help="Log the run to MLflow.")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the summary as JSON.")]


def _train(run: Any) -> Any:
    """Run a training call, turning data and settings problems into one red line."""
    from slm_agents.finetune.data import DataError
    from slm_agents.models import ModelNotFoundError

    quiet_transformers()
    try:
        return run()
    except (DataError, ValueError, ModelNotFoundError) as exc:
        raise fail(str(exc)) from exc


def _settings(defaults: tuple[dict, dict], options: dict[str, Any]) -> tuple[Any, Any]:
    """SFTSettings and TrainConfig: the recipe's defaults, then each option given (not None).

    ``options`` is the command's ``locals()``: entries named like a field of SFTSettings or
    TrainConfig are sorted into the two; the rest (paths, flags) are ignored.
    """
    from dataclasses import fields

    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.finetune.sft import SFTSettings

    known = {f.name for f in fields(SFTSettings)} | {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in options.items() if k in known and v is not None}
    if "rank" in given:
        given["alpha"] = 2 * given["rank"]
    names = {f.name for f in fields(SFTSettings)}
    settings = {k: v for k, v in given.items() if k in names}
    config = {k: v for k, v in given.items() if k not in names}
    return SFTSettings(**{**defaults[0], **settings}), TrainConfig(**{**defaults[1], **config})


def finetune_sft(
    data: Path = typer.Option(..., help="JSONL of {prompt, response} or {messages} rows."),
    output: Output = ...,
    validation_data: Path = typer.Option(None, help="Validation JSONL; default: 5% of --data."),
    base: Base = None,
    epochs: Epochs = 2,
    batch_size: BatchSize = 4,
    learning_rate: LearningRate = 1e-3,
    rank: Rank = None,
    max_length: MaxLength = None,
    top_layers: TopLayers = None,
    max_minutes: MaxMinutes = None,
    max_steps: MaxSteps = None,
    seed: Seed = 0,
    track: Track = True,
    json_out: JsonOut = None,
):
    """LoRA SFT of a causal SLM on prompt/response pairs; resumes from OUTPUT/checkpoint."""
    options = dict(locals())
    from slm_agents.finetune.sft import train_sft
    from slm_agents.finetune.sft_data import load_chat

    settings, config = _settings(({}, {}), options)

    def run() -> Any:
        train = load_chat(data)
        validation = load_chat(validation_data) if validation_data else None
        return train_sft(
            train, output, validation=validation, settings=settings, config=config, track=track
        )

    result = _train(run)
    print_summary(f"Adapter saved to {output}", result.summary(), json_out)


def finetune_extractor(
    data: Path = typer.Option(..., help="SROIE-format receipts JSONL."),
    output: Output = ...,
    base: Base = None,
    holdout: int = typer.Option(50, min=0, help="Receipts held out for evaluation."),
    split_seed: int = typer.Option(0, help="Seed of the held-out split."),
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    rank: Rank = None,
    max_length: MaxLength = None,
    top_layers: TopLayers = None,
    limit: int = typer.Option(None, min=1, help="Train on the first N training receipts only."),
    max_minutes: MaxMinutes = None,
    max_steps: MaxSteps = None,
    seed: Seed = 0,
    track: Track = True,
    json_out: JsonOut = None,
):
    """Train the receipt field extractor (company, date, address, total) on SROIE receipts.

    The held-out receipts (listed in OUTPUT/sft.json) are never trained on; score them with
    `slm-agents evaluate extractor OUTPUT --data RECEIPTS --heldout`.
    """
    options = dict(locals())
    from slm_agents.finetune.recipes import EXTRACTOR_SETTINGS, EXTRACTOR_TRAIN, train_extractor

    settings, config = _settings((EXTRACTOR_SETTINGS, EXTRACTOR_TRAIN), options)
    result = _train(
        lambda: train_extractor(
            data,
            output,
            holdout=holdout,
            split_seed=split_seed,
            settings=settings,
            config=config,
            limit=limit,
            track=track,
        )
    )
    facts = result.summary()
    facts["holdout"] = len(facts.pop("holdout_ids"))
    facts.pop("schema")
    print_summary(f"Extractor adapter saved to {output}", facts, json_out)


def finetune_code(
    output: Output = ...,
    source: Path = typer.Option(
        None, help="Folder of source files; default: the installed markdown_it."
    ),
    pattern: str = typer.Option("*.py", help="Which files of --source to use."),
    base: Base = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    rank: Rank = None,
    max_length: MaxLength = None,
    top_layers: TopLayers = None,
    max_minutes: MaxMinutes = None,
    max_steps: MaxSteps = None,
    seed: Seed = 0,
    track: Track = True,
    json_out: JsonOut = None,
):
    """Adapt the SLM to a code base's style; reports held-out files' perplexity before/after."""
    options = dict(locals())
    from slm_agents.finetune.recipes import CODE_SETTINGS, CODE_TRAIN, train_code

    settings, config = _settings((CODE_SETTINGS, CODE_TRAIN), options)
    result = _train(
        lambda: train_code(
            source, output, pattern=pattern, settings=settings, config=config, track=track
        )
    )
    print_summary(f"Code adapter saved to {output}", result.summary(), json_out)


def evaluate_extractor_command(
    model: str = typer.Argument(..., help="Adapter directory, or a base model (zero-shot)."),
    data: Path = typer.Option(..., help="SROIE-format receipts JSONL."),
    heldout: bool = typer.Option(
        False, help="Only the receipts the adapter held out (ids from its sft.json)."
    ),
    base: str = typer.Option(None, help="Base model for the adapter; default: the one it records."),
    limit: int = typer.Option(None, min=1, help="Only the first N receipts."),
    batch_size: int = typer.Option(8, min=1),
    max_new_tokens: int = typer.Option(192, min=16),
    constrain: bool = typer.Option(True, help="Decode under the receipt JSON schema."),
    json_out: Path = typer.Option(None, "--json", help="Write the results as JSON."),
):
    """Per-field and mean exact-match (whitespace and case normalised) of a receipt extractor."""
    from slm_agents.finetune.data import DataError
    from slm_agents.finetune.extraction_eval import evaluate_extractor
    from slm_agents.models import ModelNotFoundError
    from slm_agents.models.adapters import read_adapter_info

    quiet_transformers()
    try:
        ids = None
        if heldout:
            ids = read_adapter_info(model).get("holdout_ids")
            if not ids:
                raise DataError(f"{model}: sft.json lists no holdout_ids (not an extractor?)")
        facts = evaluate_extractor(
            model,
            data,
            ids=ids,
            limit=limit,
            base=base,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            constrain=constrain,
        )
    except (DataError, ValueError, ModelNotFoundError) as exc:
        raise fail(str(exc)) from exc
    shown = {"mean_exact_match": facts["mean"]}
    shown.update({f"exact_{k}": v for k, v in facts["per_field"].items()})
    print_summary(f"{model} on {data}", {**shown, **facts}, json_out)

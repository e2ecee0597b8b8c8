"""Causal LoRA SFT benchmark: does a 135M SLM learn real tasks on a 2-core CPU, and how fast?

Why: the project claims that LoRA SFT turns SmolLM2-135M-Instruct into a useful specialist on
a plain CPU in well under an hour. This script measures both built-in recipes of
:mod:`slm_agents.finetune.recipes` end to end, on data that training never sees:

1. **Extractor (SROIE receipts).** The 450 receipts are split by a seeded shuffle of their
   sorted ids (seed 0): 50 held out, 400 for training (of which 5% is the validation set for
   early stopping). Before: the zero-shot base model, same prompt, same JSON-schema constraint.
   After: the trained adapter. Score: per-field and mean exact-match after collapsing whitespace
   and case folding (:mod:`slm_agents.finetune.extraction_eval`).
   Goal: mean >= 85% on the held-out 50.
2. **Code house style.** The installed ``markdown_it`` package (markdown-it-py, MIT, pure
   Python) split by file (seed 0: 20% test, 10% validation), cut into 512-token windows.
   Perplexity of the test files before and after. Goal: at least 25% lower.

Training time, tokens/s (training tokens over training seconds, validation excluded) and the
share of CPU that other processes used meanwhile (``others_cpu``) are recorded for each part.

Run it from the repository root, on a quiet machine::

    .venv/bin/python benchmarks/finetune_sft.py --quick   # smoke run, ~5 min on 2 idle cores
    .venv/bin/python benchmarks/finetune_sft.py           # full run, ~35 min on 2 idle cores
    .venv/bin/python benchmarks/finetune_sft.py --skip-code --keep /tmp/sft   # keep adapters

It prints a table and writes ``benchmarks/results/finetune_sft.json`` (``--json`` elsewhere).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import harness
from harness import OtherCpuUse, at_least, busy_cell, console, verdict

GOALS = {"extractor_mean_exact_match": 0.85, "code_perplexity_drop": 0.25}
# (full, --quick): training receipts (None = all 400), held-out receipts scored, step budgets
DEFAULTS = {
    "train_receipts": (None, 16),
    "eval_receipts": (None, 8),
    "extractor_steps": (None, 4),
    "code_steps": (None, 4),
}


# ---------------------------------------------------------------------------------- parts
def bench_extractor(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from slm_agents.finetune.extraction_eval import evaluate_extractor
    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.finetune.recipes import (
        EXTRACTOR_SETTINGS,
        EXTRACTOR_TRAIN,
        load_receipts,
        train_extractor,
    )
    from slm_agents.finetune.sft import SFTSettings

    out = workdir / "extractor"
    config = TrainConfig(**{**EXTRACTOR_TRAIN, "max_steps": args.extractor_steps})
    if args.epochs:
        config.epochs = args.epochs
    if args.max_minutes:
        config.max_minutes = args.max_minutes
    settings = SFTSettings(**EXTRACTOR_SETTINGS)
    console.print("[bold]Extractor[/]: training")
    with OtherCpuUse() as others:
        trained = train_extractor(
            args.data,
            out,
            holdout=args.holdout,
            settings=settings,
            config=config,
            limit=args.train_receipts,
            track=False,
        )
    train = trained.summary()
    held = train.pop("holdout_ids")
    train.pop("schema")
    train["others_cpu"] = others.fraction
    ids = held[: args.eval_receipts] if args.eval_receipts else held
    receipts = load_receipts(args.data)

    def score(model: Any, label: str) -> dict[str, Any]:
        console.print(f"[bold]Extractor[/]: scoring {label} on {len(ids)} held-out receipts")
        with OtherCpuUse() as busy:
            result = evaluate_extractor(model, receipts, ids=ids, progress=True)
        result["others_cpu"] = busy.fraction
        return result

    before = score(settings.base, "the zero-shot base model")
    before.pop("rows")
    after = score(out, "the adapter")
    return {
        "data": str(args.data),
        "split": f"sorted ids shuffled with random.Random(0); first {args.holdout} held out",
        "holdout_ids": held,
        "scored_ids": ids,
        "settings": {"sft": trained_settings(out), "train": vars_of(config)},
        "train": train,
        "before": before,
        "after": after,
    }


def bench_code(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.finetune.recipes import (
        CODE_SETTINGS,
        CODE_TRAIN,
        default_code_folder,
        train_code,
    )
    from slm_agents.finetune.sft import SFTSettings

    source = args.code_source or default_code_folder()
    config = TrainConfig(**{**CODE_TRAIN, "max_steps": args.code_steps})
    console.print(f"[bold]Code[/]: training on {source}")
    with OtherCpuUse() as others:
        trained = train_code(
            source,
            workdir / "code",
            settings=SFTSettings(**CODE_SETTINGS),
            config=config,
            track=False,
        )
    facts = trained.summary()
    before, after = facts["test_perplexity_before"], facts["test_perplexity"]
    return {
        "source": str(source),
        "package": _package_version(source),
        "settings": {"sft": trained_settings(workdir / "code"), "train": vars_of(config)},
        "train": {**facts, "others_cpu": others.fraction},
        "perplexity_before": before,
        "perplexity_after": after,
        "perplexity_drop": round(1 - after / before, 4) if before and after else None,
    }


def trained_settings(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / "sft.json").read_text())["settings"]


def vars_of(config: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


def _package_version(source: Path) -> str | None:
    if Path(source).name == "markdown_it":
        return f"markdown-it-py {importlib.metadata.version('markdown-it-py')}"
    return None


def compute_goals(results: dict[str, Any]) -> dict[str, Any]:
    goals = {}
    if "extractor" in results:
        after = results["extractor"]["after"]
        goals["extractor_mean_exact_match"] = at_least(
            after["mean"],
            GOALS["extractor_mean_exact_match"],
            n=after["n"] * len(after["per_field"]),
        )  # n: fields scored
    if "code" in results and results["code"]["perplexity_drop"] is not None:
        goals["code_perplexity_drop"] = at_least(
            results["code"]["perplexity_drop"], GOALS["code_perplexity_drop"]
        )
    return goals


# ---------------------------------------------------------------------------------- report
def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    table = harness.table(
        f"LoRA SFT of SmolLM2-135M-Instruct on {machine['cpu_count']} CPUs "
        f"({machine['cpu_model']}){' [quick]' if results['settings']['quick'] else ''}",
        [
            "Recipe / metric",
            ("Before", "right"),
            ("After", "right"),
            ("Train", "right"),
            ("Tokens/s", "right"),
            ("Others' CPU", "right"),
        ],
    )
    if "extractor" in results:
        ex = results["extractor"]
        train, before, after = ex["train"], ex["before"], ex["after"]
        table.add_row(
            f"[bold]Extractor[/], {train['train_rows']} train / {after['n']} held-out receipts",
            "",
            "",
            f"{train['train_seconds'] / 60:.1f} min, {train['epochs_run']} ep",
            f"{train['tokens_per_second']:.0f}",
            busy_cell(train["others_cpu"]),
        )
        for field, value in after["per_field"].items():
            table.add_row(
                f"  exact match: {field}", f"{before['per_field'][field]:.1%}", f"{value:.1%}"
            )
        table.add_row(
            "  [bold]mean exact match[/]",
            f"{before['mean']:.1%}",
            f"[bold]{after['mean']:.1%}[/]",
            f"eval {after['seconds']:.0f} s",
            "",
            busy_cell(after["others_cpu"]),
        )
    if "code" in results:
        code = results["code"]
        train = code["train"]
        table.add_section()
        carried = (
            f" (carried from the run of {code['carried_from']})" if "carried_from" in code else ""
        )
        table.add_row(
            f"[bold]Code[/], {code['package'] or code['source']}: test-file perplexity{carried}",
            f"{code['perplexity_before']:.2f}",
            f"[bold]{code['perplexity_after']:.2f}[/]",
            f"{train['train_seconds'] / 60:.1f} min, {train['epochs_run']} ep",
            f"{train['tokens_per_second']:.0f}",
            busy_cell(train["others_cpu"]),
        )
        drop = code["perplexity_drop"]
        table.add_row("  perplexity drop", "", "-" if drop is None else f"{drop:.1%}")
    console.print(table)
    for name, goal in results["goals"].items():
        margin = f" ±{goal['margin']:.1%}" if goal.get("margin") else ""
        console.print(
            f"goal {name}: {goal['value']:.1%}{margin} vs {goal['goal']:.0%}: "
            f"{verdict(goal['met'])}"
        )


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="LoRA SFT of the bundled SLM: SROIE extractor and code style, before/after."
    )
    parser.add_argument(
        "--data", type=Path, help="SROIE receipts JSONL [sroie/receipts.jsonl of the data folder]"
    )
    parser.add_argument("--holdout", type=int, default=50, help="held-out receipts [50]")
    parser.add_argument("--train-receipts", type=int, help="training receipts [all; quick 16]")
    parser.add_argument("--eval-receipts", type=int, help="held-out receipts scored [all; quick 8]")
    parser.add_argument("--extractor-steps", type=int, help="step budget [none; quick 4]")
    parser.add_argument("--code-steps", type=int, help="step budget [none; quick 4]")
    parser.add_argument("--epochs", type=int, help="extractor epochs [recipe default]")
    parser.add_argument("--max-minutes", type=float, help="extractor training budget [none]")
    parser.add_argument("--code-source", type=Path, help="code folder [installed markdown_it]")
    parser.add_argument("--skip-extractor", action="store_true")
    parser.add_argument("--skip-code", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the adapters here (default: temp dir)")
    harness.add_output_option(parser, "finetune_sft")
    parser.add_argument("--quick", action="store_true", help="smoke run on small slices")
    args = parser.parse_args(argv)
    harness.fill_defaults(args, DEFAULTS)
    args.data = args.data or harness.data_file("sroie", "receipts.jsonl")
    args.output = harness.output_path(args, "finetune_sft")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from slm_agents.console import quiet_transformers

    quiet_transformers()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    warnings.filterwarnings("ignore", message=".*prompts were longer than max_length.*")
    results = harness.start("finetune_sft")
    started = time.perf_counter()
    results["settings"] = {
        "quick": args.quick,
        "holdout": args.holdout,
        "train_receipts": args.train_receipts,
        "eval_receipts": args.eval_receipts,
        "extractor_steps": args.extractor_steps,
        "code_steps": args.code_steps,
    }
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="slm-sft-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_extractor:
            results["extractor"] = bench_extractor(args, workdir)
        if not args.skip_code:
            results["code"] = bench_code(args, workdir)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.quick:
        skipped = [part for part in ("extractor", "code") if getattr(args, f"skip_{part}")]
        results.update(harness.carried_parts(args.output, skipped))
    results["goals"] = compute_goals(results)
    harness.finish(results, started, print_report, args.output)
    return results


if __name__ == "__main__":
    main()

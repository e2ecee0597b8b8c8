"""Fine-tuning benchmark: what do LoRA, distillation, int8 and pruning buy on BANKING77?

Goals, checked on this machine (2 CPU cores, no GPU):

* the 22M MiniLM encoder reaches at least 90% BANKING77 test accuracy trained in at most 10
  minutes (wall clock, from loading the model to the saved classifier);
* distillation: student accuracy with and without a teacher at equal training time;
* int8 stays within 1 point of the float model's accuracy; size and speed deltas for int8 and
  pruning.

What runs (each step prints, all go to ``benchmarks/results/finetune.json``):

1. **zero-shot** MiniLM over the 77 intent names (no training), for context;
2. **LoRA classifier**: ``train_classifier`` on the 10,003 training tickets (10% held out for
   early stopping), then test accuracy on the 3,080 test tickets. The head's nearest-centroid
   start is reported too (the accuracy before any gradient step);
3. **distillation**: a 3-block MiniLM student trained for ``--student-steps`` optimizer steps
   with the classifier from step 2 as teacher, and the same student for the same number of steps
   without it. Equal steps is equal training compute (each step is one batch of 32 through the
   same student); wall seconds are reported too but swing with other load on a shared machine.
   The teacher's one inference pass over the training texts is reported separately;
4. **int8** and **pruning** (magnitude 30%; MLP channels 50% with a ``--recover-minutes``
   recovery fine-tune) of the step-2 classifier: bytes, test accuracy, texts/s before and after.

Accuracy and speed are measured on the full test set (``--test-rows`` to shorten).
Run: ``.venv/bin/python benchmarks/finetune.py`` (about 15 minutes on a quiet machine) or
``--quick`` for a small smoke run (not for quoting).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import console, timed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, not for quoting")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--recover-minutes", type=float, default=1.5)
    parser.add_argument("--test-rows", type=int, default=None)
    harness.add_output_option(parser, "finetune")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.max_minutes, args.student_steps = 1, 1.0, 40
        args.recover_minutes, args.test_rows = 0.2, args.test_rows or 300
    args.output = harness.output_path(args, "finetune")
    return args


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    from slm_agents.finetune.data import LabelledTexts, load_labelled

    train = load_labelled(harness.data_file("banking77", "train.csv"), "text", "category")
    test = load_labelled(harness.data_file("banking77", "test.csv"), "text", "category")
    if args.quick:
        train = LabelledTexts(train.texts[::8], train.labels[::8], f"{train.source}[::8]")
    if args.test_rows:
        step = max(1, len(test) // args.test_rows)
        test = LabelledTexts(test.texts[::step], test.labels[::step], f"{test.source}[::{step}]")
    return train, test


def zero_shot(test: Any) -> dict[str, Any]:
    from slm_agents.finetune.evaluate import evaluate_classifier
    from slm_agents.models import EncoderClassifier

    labels = {name: name.replace("_", " ").rstrip("?") for name in sorted(set(test.labels))}
    scores = evaluate_classifier(EncoderClassifier(labels=labels), test, progress=False)
    return {"test_accuracy": scores["accuracy"], "texts_per_second": scores["texts_per_second"]}


def lora_classifier(train: Any, test: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from slm_agents.finetune.classifier import train_classifier
    from slm_agents.finetune.evaluate import evaluate_classifier
    from slm_agents.finetune.loop import TrainConfig

    config = TrainConfig(epochs=args.epochs, max_minutes=args.max_minutes)
    result, seconds, others = timed(
        lambda: train_classifier(train, out, config=config, progress=False, track=False)
    )
    scores = evaluate_classifier(out, test, progress=False)
    return {
        "train_rows": result.train_rows,
        "validation_rows": result.validation_rows,
        "epochs": result.report.epochs_run,
        "stopped": result.report.stopped,
        "wall_seconds": round(seconds, 1),
        "loop_seconds": result.report.seconds,
        "validation_accuracy_start": result.start_accuracy,
        "validation_accuracy": result.accuracy,
        "test_accuracy": scores["accuracy"],
        "test_rows": len(test),
        "texts_per_second": scores["texts_per_second"],
        "others_cpu": others,
    }


def distillation(
    train: Any, test: Any, teacher: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.distill import distill_classifier
    from slm_agents.finetune.evaluate import evaluate_classifier
    from slm_agents.finetune.loop import TrainConfig

    settings = ClassifierSettings(layers=3)
    config = TrainConfig(epochs=10, max_steps=args.student_steps, patience=10)
    rows: dict[str, Any] = {"student": "all-minilm-l6-v2, first 3 of 6 blocks", "teacher": "step 2"}
    runs = {
        "without_teacher": lambda: train_classifier(
            train, work / "plain", settings=settings, config=config, progress=False, track=False
        ),
        "with_teacher": lambda: distill_classifier(
            train, work / "distilled", str(teacher), settings=settings, config=config,
            progress=False, track=False,
        ),
    }  # fmt: skip
    for name, run in runs.items():
        result, seconds, others = timed(run)
        scores = evaluate_classifier(result.output, test, progress=False)
        rows[name] = {
            "test_accuracy": scores["accuracy"],
            "loop_seconds": result.report.seconds,
            "steps": result.report.steps,
            "wall_seconds": round(seconds, 1),
            "others_cpu": others,
        }
    return rows


def compression(source: Path, train: Any, test: Any, args: argparse.Namespace, work: Path):
    from slm_agents.finetune.compress import prune, quantize

    steps = {
        "int8": lambda: quantize(source, work / "int8", data=test),
        "magnitude_30": lambda: prune(
            source, work / "sparse", method="magnitude", amount=0.3, data=test
        ),
        "mlp_channels_50_recovered": lambda: prune(
            source, work / "thin", method="mlp-channels", amount=0.5, data=test, recover=train,
            recover_minutes=args.recover_minutes, progress=False,
        ),
    }  # fmt: skip
    out = {}
    for name, step in steps.items():
        report, seconds, others = timed(step)
        out[name] = {**report, "wall_seconds": round(seconds, 1), "others_cpu": others}
        console.print(f"  {name}: {seconds:.0f} s")
    return out


def print_report(results: dict[str, Any]) -> None:
    clf = results["classifier"]
    table = harness.table(
        "LoRA classifier on BANKING77 (77 intents)",
        ["model", ("test acc", "right"), ("train wall s", "right"), ("texts/s", "right")],
    )
    table.add_row("zero-shot MiniLM", f"{results['zero_shot']['test_accuracy']:.4f}", "-",
                  f"{results['zero_shot']['texts_per_second']:.0f}")  # fmt: skip
    table.add_row(
        f"LoRA MiniLM ({clf['epochs']} epochs, {clf['stopped']})",
        f"{clf['test_accuracy']:.4f}",
        f"{clf['wall_seconds']:.0f}",
        f"{clf['texts_per_second']:.0f}",
    )
    console.print(table)
    accuracy = harness.at_least(clf["test_accuracy"], 0.90, n=clf.get("test_rows"))
    in_time = clf["wall_seconds"] <= 600
    met = accuracy["met"] if in_time else False
    console.print(f"goal >= 0.90 (±{accuracy['margin']:.4f}) in <= 600 s: {harness.verdict(met)}")
    distill = results["distillation"]
    table = harness.table(
        f"Distillation: {distill['student']}, equal steps",
        ["student", "test acc", "loop s", "steps"],
    )
    for name in ("without_teacher", "with_teacher"):
        row = distill[name]
        table.add_row(name.replace("_", " "), f"{row['test_accuracy']:.4f}",
                      f"{row['loop_seconds']:.0f}", str(row["steps"]))  # fmt: skip
    console.print(table)
    columns = ("method", "MB before", "MB after", "zlib MB after", "acc before", "acc after",
               "texts/s before", "texts/s after", "sparsity")  # fmt: skip
    table = harness.table(
        "Compression of the LoRA classifier (merged), measured in one process",
        [(column, "right") for column in columns],
    )
    for name, row in results["compression"].items():
        table.add_row(
            name,
            f"{row['bytes_before'] / 1e6:.1f}",
            f"{row['bytes_after'] / 1e6:.1f}",
            f"{row['zlib_bytes_after'] / 1e6:.1f}",
            f"{row['accuracy_before']:.4f}",
            f"{row['accuracy_after']:.4f}",
            f"{row['texts_per_second_before']:.0f}",
            f"{row['texts_per_second_after']:.0f}",
            str(row.get("sparsity_after", "-")),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from slm_agents.console import quiet_transformers

    args = parse_args(argv)
    quiet_transformers()
    results = harness.start("finetune")
    started = time.perf_counter()
    results["args"] = harness.settings_of(args) | {"output": ""}
    train, test = load(args)
    results["data"] = {"train": train.source, "train_rows": len(train), "test": test.source,
                       "test_rows": len(test)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        console.print("1/4 zero-shot baseline")
        results["zero_shot"] = zero_shot(test)
        console.print("2/4 LoRA classifier")
        results["classifier"] = lora_classifier(train, test, args, work / "router")
        console.print("3/4 distillation")
        results["distillation"] = distillation(train, test, work / "router", args, work)
        console.print("4/4 compression")
        results["compression"] = compression(work / "router", train, test, args, work)
    harness.finish(results, started, print_report, args.output)
    return results


if __name__ == "__main__":
    main()

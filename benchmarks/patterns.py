"""Pattern economics on BANKING77: what do Route and Cascade buy over one tier alone?

Goal: the Cascade reaches the strong tier's accuracy while sending at most 30% of requests
to it.

The two tiers (both real, both trained here by ``finetune``, both run on this CPU):

* **small**: a 3-block MiniLM student (the first 3 of all-minilm-l6-v2's 6 transformer blocks),
  distilled from the strong tier for ``--student-steps``. About half the compute per text.
* **strong**: all-minilm-l6-v2 (6 blocks) with a LoRA adapter, ``finetune classifier`` recipe.

Offline there is no larger model that is stronger on this task, so "strong" is the fine-tuned
full-depth encoder and "small" the shallow student; the same code runs with any two agents
(e.g. an LLM behind an API as the strong tier).

Data: both tiers train on BANKING77 ``train.csv`` minus a 1,000-row calibration sample (seeded,
stratified); thresholds are calibrated on that sample; everything is scored on the 3,080-row
``test.csv``. Prices (USD per million input tokens, a word-count proxy) are set proportional to
compute: small 0.0025, strong 0.005 (the default price of MiniLM).

Configurations, each run through the real pattern agents in-process:
small only, strong only, Route (a rule: longer tickets to the strong tier, the length cut
calibrated to 30% of the calibration sample), and Cascades calibrated to 30% escalated and to
reach the strong tier's calibration accuracy, each with two confidence measures of the small
tier: its top probability, and its margin (top probability minus the runner-up's). Plus
threshold sweeps drawn as cost-accuracy curves (``benchmarks/results/patterns.png``).

Run: ``.venv/bin/python benchmarks/patterns.py`` (about 8 minutes on a quiet machine; pass
``--strong DIR --small DIR`` to reuse trained tiers) or ``--quick`` (not for quoting).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import REPO_ROOT, console

PRICES = {"minilm-3-blocks": {"input_per_million": 0.0025, "output_per_million": 0.0},
          "minilm-lora": {"input_per_million": 0.005, "output_per_million": 0.0}}  # fmt: skip
SHARE_GOAL = 0.30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run, not for quoting")
    parser.add_argument("--strong", type=Path, help="reuse a trained strong classifier dir")
    parser.add_argument("--small", type=Path, help="reuse a trained small classifier dir")
    parser.add_argument("--calibration-rows", type=int, default=1000)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--test-rows", type=int, default=None)
    parser.add_argument("--keep", type=Path, help="train the tiers into this folder and keep them")
    harness.add_output_option(parser, "patterns")
    args = parser.parse_args(argv)
    if args.quick:
        args.calibration_rows, args.student_steps = 300, 40
        args.test_rows = args.test_rows or 300
    args.output = harness.output_path(args, "patterns")
    return args


def load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from slm_agents.finetune.data import LabelledTexts, load_labelled

    everything = load_labelled(harness.data_file("banking77", "train.csv"), "text", "category")
    share = args.calibration_rows / len(everything)
    train, calibration = everything.split(validation=share, seed=1)
    if args.quick:
        train = LabelledTexts(train.texts[::8], train.labels[::8], f"{train.source}[::8]")
    test = load_labelled(harness.data_file("banking77", "test.csv"), "text", "category")
    if args.test_rows:
        step = max(1, len(test) // args.test_rows)
        test = LabelledTexts(test.texts[::step], test.labels[::step], f"{test.source}[::{step}]")
    return train, calibration, test


def train_tiers(args: argparse.Namespace, train: Any, work: Path) -> tuple[Path, Path, dict]:
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.distill import distill_classifier
    from slm_agents.finetune.loop import TrainConfig

    facts: dict[str, Any] = {}
    strong = args.strong
    if strong is None:
        strong = work / "strong"
        epochs = 1 if args.quick else 2
        started = time.perf_counter()
        result = train_classifier(
            train, strong, config=TrainConfig(epochs=epochs), progress=False, track=False
        )
        facts["strong_train_seconds"] = round(time.perf_counter() - started, 1)
        facts["strong_validation_accuracy"] = result.accuracy
    small = args.small
    if small is None:
        small = work / "small"
        started = time.perf_counter()
        result = distill_classifier(
            train, small, str(strong), settings=ClassifierSettings(layers=3),
            config=TrainConfig(epochs=10, max_steps=args.student_steps, patience=10),
            progress=False, track=False,
        )  # fmt: skip
        facts["small_train_seconds"] = round(time.perf_counter() - started, 1)
        facts["small_validation_accuracy"] = result.accuracy
    return small, strong, facts


def agents(small_dir: Path, strong_dir: Path) -> tuple[Any, Any, Any]:
    """The small tier twice (confidence = top probability, and = margin over the runner-up;
    one model) and the strong tier."""
    from slm_agents.agent import ClassifierAgent
    from slm_agents.models import EncoderClassifier
    from slm_agents.pricing import PriceTable

    prices = PriceTable(PRICES)
    small_model, strong_model = (
        EncoderClassifier(str(small_dir)),
        EncoderClassifier(str(strong_dir)),
    )
    small_model.name, strong_model.name = "minilm-3-blocks", "minilm-lora"
    small = ClassifierAgent("small", small_model, prices=prices)
    small_margin = ClassifierAgent("small", small_model, prices=prices, confidence="margin")
    strong = ClassifierAgent("strong", strong_model, prices=prices)
    return small, small_margin, strong


def run(agent: Any, data: Any) -> tuple[list[Any], float, float | None]:
    """All of ``data`` through ``agent``, 64 texts a batch; results, seconds, others' CPU share."""
    return harness.timed_batches(agent, data.texts, batch=64)


def score(name: str, results: list[Any], data: Any, seconds: float, others: Any) -> dict:
    n = len(results)
    strong_calls = sum(any(s.agent == "strong" for s in r.path) for r in results)
    correct = sum(r.output == y for r, y in zip(results, data.labels, strict=True))
    return {
        "configuration": name,
        "accuracy": round(correct / n, 4),
        "share_strong": round(strong_calls / n, 4),
        "texts_per_second": round(n / seconds, 1),
        "cost_per_1k_usd": round(1000 * sum(r.cost for r in results) / n, 8),
        "errors": sum(not r.ok for r in results),
        "others_cpu": others,
    }


class LengthRule:
    """A rules router: tickets longer than ``words`` words go to the strong tier."""

    name = "length-rule"

    def __init__(self, words: int):
        self.words = words

    def label(self, text: str) -> str:
        return "strong" if len(text.split()) > self.words else "small"


def calibrate_length(calibration: Any, share: float) -> int:
    lengths = sorted(len(t.split()) for t in calibration.texts)
    for words in range(0, max(lengths) + 1):
        if sum(n > words for n in lengths) / len(lengths) <= share:
            return words
    return max(lengths)


def sweep(
    small_cal: list, strong_cal: list, calibration: Any, measure: str = "probability"
) -> tuple[list, list, list]:
    from slm_agents.agent import classifier_confidence

    conf = [
        classifier_confidence(r.meta["probabilities"], measure) if r.ok else 0.0 for r in small_cal
    ]
    small_ok = [r.output == y for r, y in zip(small_cal, calibration.labels, strict=True)]
    strong_ok = [r.output == y for r, y in zip(strong_cal, calibration.labels, strict=True)]
    return conf, small_ok, strong_ok


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from slm_agents.agent import FunctionAgent
    from slm_agents.console import quiet_transformers
    from slm_agents.patterns import Cascade, Route
    from slm_agents.patterns.cascade import calibrate_threshold, evaluate_threshold

    args = parse_args(argv)
    quiet_transformers()
    results = harness.start("patterns")
    started = time.perf_counter()
    results["args"] = harness.settings_of(args) | {"output": ""}
    train, calibration, test = load(args)
    results["data"] = {"train_rows": len(train), "calibration_rows": len(calibration),
                       "test": test.source, "test_rows": len(test)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        console.print("training the tiers (skipped for --strong/--small)")
        work = args.keep or Path(tmp)
        small_dir, strong_dir, results["training"] = train_tiers(args, train, work)
        small, small_margin, strong = agents(small_dir, strong_dir)
        console.print("calibrating on the held-out training sample")
        small_cal, _, _ = run(small, calibration)
        strong_cal, _, _ = run(strong, calibration)
        strong_cal_acc = None
        cascades, thresholds = {}, {}
        for measure, small_agent in (("probability", small), ("margin", small_margin)):
            conf, small_ok, strong_ok = sweep(small_cal, strong_cal, calibration, measure)
            strong_cal_acc = sum(strong_ok) / len(strong_ok)
            t_share = calibrate_threshold(conf, small_ok, strong_ok, target_share=SHARE_GOAL)
            t_acc = calibrate_threshold(conf, small_ok, strong_ok, target_accuracy=strong_cal_acc)
            thresholds[measure] = {"for_30_percent": t_share, "for_strong_accuracy": t_acc}
            cascades[f"cascade, {measure} @ {t_share:.3f} (30% target)"] = Cascade(
                small_agent, strong, threshold=t_share
            )
            cascades[f"cascade, {measure} @ {t_acc:.3f} (strong-accuracy target)"] = Cascade(
                small_agent, strong, threshold=t_acc
            )
        rule = LengthRule(calibrate_length(calibration, SHARE_GOAL))
        router = FunctionAgent("length-rule", lambda task: (rule.label(task.text), 1.0))
        configurations = {
            "small only": small,
            "strong only": strong,
            f"route: > {rule.words} words to strong": Route(
                router, {"small": small, "strong": strong}
            ),
            **cascades,
        }
        rows = []
        for name, agent in configurations.items():
            console.print(f"  {name}")
            out, seconds, others = run(agent, test)
            rows.append(score(name, out, test, seconds, others))
        results["configurations"] = rows
        results["calibration"] = {
            "strong_accuracy": round(strong_cal_acc or 0.0, 4),
            "thresholds": thresholds,
            "length_rule_words": rule.words,
        }
        small_test, _, _ = run(small, test)
        strong_test, _, _ = run(strong, test)
        levels = sorted({round(x / 40, 3) for x in range(41)})
        results["curves"] = {}
        for measure in ("probability", "margin"):
            t_conf, t_small_ok, t_strong_ok = sweep(small_test, strong_test, test, measure)
            results["curves"][measure] = [
                evaluate_threshold(t_conf, t_small_ok, t_strong_ok, t) for t in levels
            ]  # test-set curves: for the plot only; thresholds above come from calibration
    results["goal"] = goal(rows, results["data"]["test_rows"])
    draw(results, args.output.with_suffix(".png"))
    harness.finish(results, started, print_report, args.output)
    return results


def goal(rows: list[dict], test_rows: int) -> dict[str, Any]:
    """Does a cascade reach the strong tier's accuracy with at most 30% escalated?

    Within the 95% binomial margin of the strong tier's accuracy on ``test_rows`` tickets the
    answer is "not resolved" (``met: None``): one ticket either way is not a result.
    """
    strong = next(r for r in rows if r["configuration"] == "strong only")
    cascades = [r for r in rows if r["configuration"].startswith("cascade")]
    within_budget = [r for r in cascades if r["share_strong"] <= 0.30]
    passing = [r for r in within_budget if r["accuracy"] >= strong["accuracy"]]
    a = strong["accuracy"]
    margin = 1.96 * math.sqrt(a * (1 - a) / test_rows)
    best = max((r["accuracy"] for r in within_budget), default=0.0)
    met = None if abs(best - a) < margin else best >= a
    return {
        "strong_accuracy": a,
        "margin": round(margin, 4),
        "met": met,
        "by": [r["configuration"] for r in passing],
    }


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    price = {name: p["input_per_million"] for name, p in PRICES.items()}
    for measure, curve in results["curves"].items():
        xs, ys = [c["escalated"] for c in curve], [c["accuracy"] for c in curve]
        left.plot(xs, ys, "-o", ms=3, label=f"confidence: {measure}")
    strong = next(r for r in results["configurations"] if r["configuration"] == "strong only")
    left.axhline(strong["accuracy"], color="grey", ls="--", lw=0.8)
    left.legend(fontsize=8, loc="lower right")
    left.set_xlabel("share escalated to the strong tier")
    left.set_ylabel("test accuracy")
    left.axvline(SHARE_GOAL, color="grey", ls=":")
    for row in results["configurations"]:
        right.scatter(row["cost_per_1k_usd"], row["accuracy"], label=row["configuration"])
    right.set_xlabel("cost per 1,000 tickets (USD, price table)")
    right.set_ylabel("test accuracy")
    right.legend(fontsize=7, loc="lower right")
    left.set_title("Cascade threshold sweep (test set)")
    right.set_title("Configurations")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    relative = path.is_relative_to(REPO_ROOT)
    results["plot"] = str(path.relative_to(REPO_ROOT)) if relative else str(path)
    ratio = price["minilm-lora"] / price["minilm-3-blocks"]
    results["relative_cost_curves"] = {
        measure: [round(1 + c["escalated"] * ratio, 3) for c in curve]
        for measure, curve in results["curves"].items()
    }


def print_report(results: dict[str, Any]) -> None:
    table = harness.table(
        "Pattern economics, BANKING77 test (small: 3-block student; strong: LoRA)",
        [
            "configuration",
            ("accuracy", "right"),
            ("share strong", "right"),
            ("texts/s", "right"),
            ("USD / 1k", "right"),
        ],
    )
    for row in results["configurations"]:
        table.add_row(
            row["configuration"],
            f"{row['accuracy']:.4f}",
            f"{row['share_strong']:.1%}",
            f"{row['texts_per_second']:.0f}",
            f"{row['cost_per_1k_usd']:.6f}",
        )
    console.print(table)
    g = results["goal"]
    reached = f"; reached on this run by {', '.join(g['by'])}" if g["by"] else ""
    console.print(
        f"goal (cascade >= strong accuracy {g['strong_accuracy']:.4f} ±{g['margin']:.4f} with "
        f"<= 30% escalated): {harness.verdict(g['met'])}{reached}"
    )


if __name__ == "__main__":
    main()

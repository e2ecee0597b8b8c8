"""Specialists on their datasets: the SLM alone, the LLM tier alone, and the best pattern.

Why: does each specialist do its job, and at what cost, against the LLM tier?
Offline **the LLM tier is played by the bundled SmolLM2-135M-Instruct, zero-shot** (there is no
larger local chat model); with a real LLM behind an OpenAI-compatible endpoint the same code
measures the real trade-off.

1. **SupportRouter** on BANKING77: a LoRA MiniLM intent router trained here by ``finetune``
   (tracked in MLflow; ``--router DIR`` reuses one) on train.csv minus a 1,000-row calibration
   sample (seed 1), its temperature fitted on that sample. SLM alone: intent accuracy on the
   3,080 test tickets (and department accuracy). LLM tier alone: SmolLM2 choosing among the 77
   intent names under an ``enum`` constraint, on the first ``--llm-rows`` test tickets. Pattern:
   a Cascade sending the router's least confident ``--share`` (calibrated) to the LLM tier, on
   the same rows. Goal: the router alone >= 90%.
2. **Extractor** on the 50 held-out SROIE receipts (the split of ``finetune extractor``):
   the LoRA adapter (``--extractor-adapter DIR``, else trained here with the recipe) against the
   zero-shot base model, and a Cascade sending the adapter's least confident receipts (minimum
   field confidence) to the zero-shot tier. Goal: >= 85% mean field exact-match.
3. **Coder** on the first ``--problems`` HumanEval problems: pass@1 of the first attempt and
   with the test-and-repair loop (2 rounds; ``--repairs`` for ``coder_completion``). The goal
   is the relative gain.
   ``coder`` is SmolLM2-135M-Instruct in chat style; ``coder_completion`` is the bundled
   Gemma-3-270M base model in completion style (``Coder(style="completion")``), whose first
   attempt is greedy and whose ``--repairs`` rounds sample (``--repair-temperature``,
   ``--repair-top-p``) with the last error in a comment. Its two rows come from one run:
   "first attempt" counts the problems that passed on attempt 1, priced and timed on that
   round's steps alone; ``passed_by_round`` in the JSON gives the curve in between.
   ``coder_resample`` is the same run with ``Coder(repair_feedback=False)``: the repair rounds
   resend the first prompt, so they only resample. The gap between the two is what the error
   comment adds.

Run from the repository root on a quiet machine::

    .venv/bin/python benchmarks/specialists.py --quick      # smoke run, not for quoting
    .venv/bin/python benchmarks/specialists.py --extractor-adapter /tmp/sft-bench/extractor

It prints a table and writes ``benchmarks/results/specialists.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import REPO_ROOT, at_least, console, data_file, timed_batches, verdict

GROUPING = REPO_ROOT / "examples" / "banking77_departments.yaml"
GOALS = {"router_accuracy": 0.90, "extractor_exact_match": 0.85}
LLM_ROUTE_PROMPT = (
    "Which of these intents does the bank customer's message express?\n{intents}\n\n"
    "Message: {{text}}"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on slices, not for quoting")
    parser.add_argument("--router", type=Path, help="reuse a trained intent classifier dir")
    parser.add_argument("--router-minutes", type=float, default=10.0)
    parser.add_argument("--test-rows", type=int, help="router test tickets [all 3,080]")
    parser.add_argument("--llm-rows", type=int, default=200, help="tickets for the LLM tier")
    parser.add_argument("--share", type=float, default=0.10, help="cascade share to the LLM tier")
    parser.add_argument(
        "--extractor-adapter", type=Path, help="adapter dir from finetune extractor"
    )
    parser.add_argument("--extractor-minutes", type=float, default=45.0)
    parser.add_argument("--receipts", type=int, help="held-out receipts scored [all 50]")
    parser.add_argument("--problems", type=int, default=40, help="HumanEval problems")
    parser.add_argument(
        "--repairs", type=int, default=2, help="coder_completion: repair rounds after attempt 1"
    )
    parser.add_argument(
        "--repair-temperature", type=float, default=0.7, help="coder_completion: sampling"
    )
    parser.add_argument("--repair-top-p", type=float, default=0.95, help="coder_completion")
    parser.add_argument("--coder-batch", type=int, default=8, help="coder_completion batch")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["router", "extractor", "coder", "coder_completion", "coder_resample"],
    )
    harness.add_output_option(parser, "specialists")
    args = parser.parse_args(argv)
    if args.quick:
        args.test_rows, args.llm_rows = args.test_rows or 200, min(args.llm_rows, 16)
        args.receipts, args.problems = args.receipts or 4, min(args.problems, 3)
        args.router_minutes = min(args.router_minutes, 1.0)
        args.extractor_minutes = min(args.extractor_minutes, 1.0)
    args.output = harness.output_path(args, "specialists")
    return args


def row(
    specialist: str,
    name: str,
    metric: str,
    value: float,
    results: list,
    seconds: float,
    others: Any,
    llm_names: set[str],
) -> dict[str, Any]:
    n = len(results)
    reached = sum(any(s.agent in llm_names for s in r.path) for r in results)
    return {
        "specialist": specialist,
        "configuration": name,
        "metric": metric,
        "value": round(value, 4),
        "n": n,
        "share_llm_tier": round(reached / n, 4) if n else None,
        "per_second": round(n / seconds, 2) if seconds else None,
        "cost_per_1k_usd": round(1000 * sum(r.cost for r in results) / n, 8) if n else None,
        "errors": sum(not r.ok for r in results),
        "others_cpu": others,
    }


# ------------------------------------------------------------------------------- router
def bench_router(args: argparse.Namespace, work: Path, slm: Any) -> dict[str, Any]:
    from slm_agents.agent import LLMAgent
    from slm_agents.finetune.classifier import train_classifier
    from slm_agents.finetune.data import load_labelled
    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.job import answer_label
    from slm_agents.patterns import Cascade
    from slm_agents.specialists import SupportRouter
    from slm_agents.specialists.support_router import load_departments

    everything = load_labelled(data_file("banking77", "train.csv"), "text", "category")
    train, calibration = everything.split(validation=1000 / len(everything), seed=1)
    test = load_labelled(data_file("banking77", "test.csv"), "text", "category")
    step = max(1, len(test) // args.test_rows) if args.test_rows else 1
    texts, labels = test.texts[::step], test.labels[::step]
    facts: dict[str, Any] = {"test_rows": len(texts)}
    router_dir = args.router
    if router_dir is None:
        router_dir = work / "router"
        console.print("[bold]router[/]: training the intent classifier (tracked in MLflow)")
        started = time.perf_counter()
        trained = train_classifier(
            train,
            router_dir,
            config=TrainConfig(epochs=2, max_minutes=args.router_minutes),
            register_as="specialists-support-router",
            progress=False,
        )
        facts["train_seconds"] = round(time.perf_counter() - started, 1)
        facts["validation_accuracy"] = trained.accuracy
    router = SupportRouter(router_dir, GROUPING)
    facts["calibration"] = router.calibrate(calibration.texts, calibration.labels)
    _, of_intent = load_departments(GROUPING)

    def accuracy(results: list, truth: list[str], field: str = "intent") -> float:
        return sum(
            answer_label(r.output, field) == y for r, y in zip(results, truth, strict=True)
        ) / len(truth)

    console.print(f"[bold]router[/]: SLM alone on {len(texts)} test tickets")
    out, seconds, others = timed_batches(router, texts, batch=32)
    rows = [
        row(
            "SupportRouter",
            "SLM alone (LoRA MiniLM)",
            "intent accuracy",
            accuracy(out, labels),
            out,
            seconds,
            others,
            set(),
        )
    ]
    facts["department_accuracy"] = round(
        accuracy(out, [of_intent[y] for y in labels], "department"), 4
    )
    intents = sorted(set(everything.labels))
    llm = LLMAgent(
        "llm-tier",
        slm,
        prompt=LLM_ROUTE_PROMPT.format(intents=", ".join(intents)),
        json_schema={"enum": intents},
        max_new_tokens=24,
    )
    few, few_labels = texts[: args.llm_rows], labels[: args.llm_rows]
    console.print(f"[bold]router[/]: LLM tier alone on {len(few)} tickets")
    out, seconds, others = timed_batches(llm, few, batch=8)
    rows.append(
        row(
            "SupportRouter",
            "LLM tier alone (SmolLM2 zero-shot)",
            "intent accuracy",
            accuracy(out, few_labels),
            out,
            seconds,
            others,
            {"llm-tier"},
        )
    )
    cal = router.run_batch(calibration.texts)
    scores = sorted(r.confidence for r in cal)
    threshold = scores[min(len(scores) - 1, round(args.share * len(scores)))]
    facts["cascade_threshold"] = round(threshold, 4)
    for name, agent in (
        ("SLM alone, same tickets", router),
        (
            f"Cascade: least confident {args.share:.0%} to the LLM tier",
            Cascade(router, llm, threshold=threshold),
        ),
    ):
        out, seconds, others = timed_batches(agent, few, batch=8)
        rows.append(
            row(
                "SupportRouter",
                name,
                "intent accuracy",
                accuracy(out, few_labels),
                out,
                seconds,
                others,
                {"llm-tier"},
            )
        )
    return {"facts": facts, "rows": rows}


# ---------------------------------------------------------------------------- extractor
def bench_extractor(args: argparse.Namespace, work: Path, slm: Any) -> dict[str, Any]:
    from slm_agents.finetune.extraction_eval import score
    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.finetune.recipes import (
        EXTRACTOR_TRAIN,
        RECEIPT_SCHEMA,
        load_receipts,
        receipt_prompt,
        split_receipts,
        train_extractor,
    )
    from slm_agents.models.adapters import read_adapter_info
    from slm_agents.patterns import Cascade
    from slm_agents.specialists import Extractor

    data = data_file("sroie", "receipts.jsonl")
    facts: dict[str, Any] = {}
    adapter = args.extractor_adapter
    if adapter is None:
        adapter = work / "extractor"
        console.print("[bold]extractor[/]: training the adapter (tracked in MLflow)")
        config = TrainConfig(**{**EXTRACTOR_TRAIN, "max_minutes": args.extractor_minutes})
        facts["train"] = train_extractor(data, adapter, config=config, progress=False).summary()
        facts["train"].pop("schema", None)
    held_ids = read_adapter_info(adapter).get("holdout_ids") or [
        r.id for r in split_receipts(load_receipts(data))[1]
    ]
    receipts = {r.id: r for r in load_receipts(data)}
    held = [receipts[i] for i in held_ids][: args.receipts]
    truths = [r.fields for r in held]
    tuned = Extractor(None, slm, adapter=str(adapter), name="extractor", max_new_tokens=192)
    zero = Extractor(RECEIPT_SCHEMA, slm, name="llm-tier", max_new_tokens=192)
    prompts = [receipt_prompt(r)[0]["content"] for r in held]
    rows = []

    def exact(results: list) -> float:
        predicted = [_as_dict(r.output) if r.ok else None for r in results]
        return score(predicted, truths)["mean"]

    console.print(f"[bold]extractor[/]: adapter on {len(held)} held-out receipts")
    out, seconds, others = timed_batches(tuned, [r.text for r in held], batch=8)
    rows.append(
        row(
            "Extractor",
            "SLM alone (LoRA adapter)",
            "field exact-match",
            exact(out),
            out,
            seconds,
            others,
            {"llm-tier"},
        )
    )
    confidences = sorted(r.confidence for r in out)
    threshold = confidences[min(len(confidences) - 1, round(args.share * len(confidences)))]
    console.print("[bold]extractor[/]: zero-shot LLM tier")
    out, seconds, others = timed_batches(zero, prompts, batch=8)
    rows.append(
        row(
            "Extractor",
            "LLM tier alone (SmolLM2 zero-shot)",
            "field exact-match",
            exact(out),
            out,
            seconds,
            others,
            {"llm-tier"},
        )
    )
    cascade = Cascade(tuned, zero, threshold=threshold)
    out, seconds, others = timed_batches(cascade, [r.text for r in held], batch=8)
    rows.append(
        row(
            "Extractor",
            f"Cascade: least confident {args.share:.0%} to the LLM tier",
            "field exact-match",
            exact(out),
            out,
            seconds,
            others,
            {"llm-tier"},
        )
    )
    facts["cascade_threshold"] = round(threshold, 4)
    facts["note"] = "the cascade threshold comes from the held-out receipts' own confidences"
    return {"facts": facts, "rows": rows}


def _as_dict(output: Any) -> dict | None:
    if hasattr(output, "model_dump"):
        return output.model_dump()
    return output if isinstance(output, dict) else None


# -------------------------------------------------------------------------------- coder
def bench_coder(args: argparse.Namespace, slm: Any) -> dict[str, Any]:
    from slm_agents.specialists import Coder

    tasks = humaneval_tasks(args.problems)
    rows = []
    for name, repairs in (
        ("SLM, first attempt (pass@1)", 0),
        ("SLM + test-and-repair, 2 rounds", 2),
    ):
        console.print(f"[bold]coder[/]: {name} on {len(tasks)} problems")
        coder = Coder(model=slm, max_repairs=repairs, max_new_tokens=256)
        out, seconds, others = timed_batches(coder, tasks, batch=8)
        passed = sum(r.ok and r.output["passed"] for r in out) / len(tasks)
        rows.append(row("Coder", name, "pass@1", passed, out, seconds, others, set()))
    first, final = rows[0]["value"], rows[1]["value"]
    gain = None if not first else round(final / first - 1, 4)
    return {"facts": {"problems": len(tasks), "relative_gain": gain}, "rows": rows}


def bench_coder_completion(args: argparse.Namespace, feedback: bool = True) -> dict[str, Any]:
    """Gemma-3-270M (base) continues each HumanEval prompt; repairs from the test error, or
    (``feedback=False``) resamples the first prompt."""
    from slm_agents.models import CausalLM
    from slm_agents.specialists import Coder

    tasks = humaneval_tasks(args.problems)
    batch = args.coder_batch
    model = CausalLM("gemma-3-270m", device="cpu", batch_size=batch)
    coder = Coder(
        model=model,
        style="completion",
        max_repairs=args.repairs,
        max_new_tokens=256,
        repair_temperature=args.repair_temperature,
        repair_top_p=args.repair_top_p,
        repair_feedback=feedback,
    )
    part = "coder_completion" if feedback else "coder_resample"
    console.print(f"[bold]{part}[/]: {model.name} on {len(tasks)} problems")
    out, seconds, others = timed_batches(coder, tasks, batch=batch)
    passed = [r for r in out if r.ok and r.output["passed"]]
    first = [r for r in passed if r.output["attempts"] == 1]
    name = "Gemma-3-270M base, completion"
    sampling = f"T={args.repair_temperature}, top_p={args.repair_top_p}"
    loop = "test-and-repair" if feedback else "test-and-resample (no error shown)"
    repaired = row(
        "Coder",
        f"{name} + {loop}, {args.repairs} rounds ({sampling})",
        "pass@1",
        len(passed) / len(tasks),
        out,
        seconds,
        others,
        set(),
    )
    round_one = _first_round_seconds(out, batch=batch)
    first_row = dict(
        repaired,
        configuration=f"{name}, first attempt (pass@1)",
        value=round(len(first) / len(tasks), 4),
        per_second=round(len(out) / round_one, 2),
        cost_per_1k_usd=round(1000 * sum(_cost(r.path[:2]) for r in out) / len(out), 8),
    )
    gain = round(len(passed) / len(first) - 1, 4) if first else None
    facts = {
        "problems": len(tasks),
        "model": model.name,
        "repairs": args.repairs,
        "repair_sampling": {"temperature": args.repair_temperature, "top_p": args.repair_top_p},
        "repair_feedback": feedback,
        # problems solved by the end of each round: index 0 is the first attempt
        "passed_by_round": [
            sum(r.output["attempts"] <= k + 1 for r in passed) for k in range(args.repairs + 1)
        ],
        "passed_first": [r.task_id for r in first],
        "passed_after_repair": {
            r.task_id: r.output["attempts"] for r in passed if r.output["attempts"] > 1
        },
        "relative_gain": gain,
    }
    return {"facts": facts, "rows": [first_row, repaired]}


def humaneval_tasks(limit: int) -> list[Any]:
    """The first ``limit`` HumanEval problems as Coder tasks."""
    from slm_agents.specialists.coder import humaneval_task

    lines = data_file("humaneval", "problems.jsonl").read_text().splitlines()
    return [humaneval_task(json.loads(line)) for line in lines[:limit]]


def _first_round_seconds(results: list, batch: int) -> float:
    """Wall time of the first generate-and-test round, summed over the sequential batches."""
    total = 0.0
    for i in range(0, len(results), batch):
        paths = [r.path[:2] for r in results[i : i + batch] if r.path]
        if paths:
            total += max(s.end_s for p in paths for s in p) - min(p[0].start_s for p in paths)
    return total


def _cost(steps: list) -> float:
    return sum(s.cost for s in steps)


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    from slm_agents import tracking
    from slm_agents.console import quiet_transformers
    from slm_agents.models import CausalLM

    args = parse_args(argv)
    quiet_transformers()
    results = harness.start("specialists")
    started = time.perf_counter()
    results["args"] = harness.settings_of(args)
    results["llm_tier"] = "smollm2-135m-instruct, zero-shot (offline stand-in)"
    slm = CausalLM(device="cpu")
    with tempfile.TemporaryDirectory() as tmp, tracking.run("benchmark:specialists"):
        work = Path(tmp)
        parts = {}
        if "router" not in args.skip:
            parts["router"] = bench_router(args, work, slm)
        if "extractor" not in args.skip:
            parts["extractor"] = bench_extractor(args, work, slm)
        if "coder" not in args.skip:
            parts["coder"] = bench_coder(args, slm)
        if "coder_completion" not in args.skip:
            parts["coder_completion"] = bench_coder_completion(args)
        if "coder_resample" not in args.skip:
            parts["coder_resample"] = bench_coder_completion(args, feedback=False)
    if not args.quick:
        parts.update(harness.carried_parts(args.output, args.skip, section="parts"))
    results["parts"] = parts
    results["goals"] = goals(parts)
    harness.finish(results, started, print_report, args.output)
    return results


def goals(parts: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if "router" in parts:
        row = parts["router"]["rows"][0]
        out["router_accuracy"] = at_least(row["value"], GOALS["router_accuracy"], n=row["n"])
    if "extractor" in parts:
        row = max(parts["extractor"]["rows"], key=lambda r: r["value"])
        fields = 4 * row["n"]  # company, date, address and total of each receipt
        out["extractor_exact_match"] = at_least(
            row["value"], GOALS["extractor_exact_match"], fields
        )
    for name in ("coder", "coder_completion", "coder_resample"):
        if name in parts:
            out[f"{name}_relative_gain"] = {"value": parts[name]["facts"]["relative_gain"]}
    return out


def print_report(results: dict[str, Any]) -> None:
    table = harness.table(
        "Specialists (LLM tier offline: SmolLM2-135M-Instruct, zero-shot)",
        ["specialist", "configuration", "metric"]
        + [(column, "right") for column in ("value", "n", "LLM tier", "items/s", "USD / 1k")],
    )
    for part in results["parts"].values():
        carried = (
            f" [dim](carried from {part['carried_from']})[/]" if "carried_from" in part else ""
        )
        for r in part["rows"]:
            table.add_row(
                r["specialist"],
                r["configuration"] + carried,
                r["metric"],
                f"{r['value']:.4f}",
                str(r["n"]),
                f"{r['share_llm_tier']:.0%}",
                f"{r['per_second']:.2f}",
                f"{r['cost_per_1k_usd']:.6f}",
            )
        table.add_section()
    console.print(table)
    for name, goal in results["goals"].items():
        if "goal" in goal:
            margin = f" ±{goal['margin']:.4f}" if goal.get("margin") else ""
            console.print(
                f"goal {name}: {goal['value']:.4f}{margin} vs {goal['goal']}: "
                f"{verdict(goal['met'])}"
            )
        else:
            console.print(f"{name}: {goal['value']}")


if __name__ == "__main__":
    main()

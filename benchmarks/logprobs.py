"""What does recording token log-probabilities cost during generation?

Why: every ``Generation`` carries the log-probability of each chosen token (confidence, cascades
and the Extractor's per-field confidence are built on it). The simple way to get them is to ask
transformers for ``output_scores=True``, which keeps every step's full-vocabulary scores:
Gemma-3's vocabulary has 262,144 tokens, so that is 1 MB per row per step. ``CausalLM`` instead
records them step by step (``slm_agents.models.token_logprobs``). This script measures, in one
run, on the same prompts and the same greedy tokens:

1. ``model.generate`` alone: no log-probs (the floor);
2. ``model.generate(output_scores=True)`` plus the log-softmax and gather over the stored scores:
   the simple way, kept as the reference;
3. ``CausalLM.generate``: the whole public call, recorder, tokenising and decoding included.

All three decode the same number of steps (row 3's token ids are checked against row 1's), so
the ratios of their median wall times are the cost of the bookkeeping. Peak RSS is the process's
high-water mark after each row; the rows run in the order above, so a row's peak only shows
what it added when it exceeds the previous row's.

Run it from the repository root on a quiet machine::

    .venv/bin/python benchmarks/logprobs.py --quick   # smoke run, under a minute
    .venv/bin/python benchmarks/logprobs.py           # Gemma-3-270M, batch 8 and 32, ~12 min
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from typing import Any

import harness
from harness import busy_cell, console, measure, ratio

METHODS = {
    "generate": "model.generate, no log-probs",
    "output_scores": "model.generate(output_scores=True) + log-softmax (all scores kept)",
    "causal_lm": "CausalLM.generate (step-by-step recorder)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, not for quoting")
    parser.add_argument("--model", default="gemma-3-270m", help="catalog name [gemma-3-270m]")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--new-tokens", type=int, default=96, help="max new tokens per row")
    parser.add_argument("--repeats", type=int, default=3)
    harness.add_output_option(parser, "logprobs")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.new_tokens, args.repeats = [4], 16, 1
    args.output = harness.output_path(args, "logprobs")
    return args


def peak_rss_gb() -> float:
    """High-water mark of this process's resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def measure_batch(lm: Any, prompts: list[str], new_tokens: int, repeats: int) -> dict[str, Any]:
    """The three methods on one batch of plain-text prompts, greedy."""
    import torch

    texts = [lm._render(p, chat=False) for p in prompts]  # as CausalLM sends them (Gemma's BOS)
    enc = lm.tokenizer(
        texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    )
    fixed = dict(
        max_new_tokens=new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    width = enc.input_ids.shape[1]
    produced: dict[str, Any] = {}

    def plain() -> None:
        with torch.inference_mode():
            produced["generate"] = lm.model.generate(**enc, **fixed)[:, width:]

    def with_scores() -> None:
        with torch.inference_mode():
            out = lm.model.generate(
                **enc, **fixed, return_dict_in_generate=True, output_scores=True
            )
            new = out.sequences[:, width:]
            torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1).gather(
                -1, new.unsqueeze(-1)
            )

    def public() -> None:
        produced["causal_lm"] = lm.generate(prompts, max_new_tokens=new_tokens, chat=False)

    rows: dict[str, Any] = {}
    for name, fn in (("generate", plain), ("output_scores", with_scores), ("causal_lm", public)):
        fn()  # warm-up; also fills `produced` for the check below
        steps = produced["generate"].shape[1]
        rows[name] = {**measure(fn, repeats, len(prompts) * steps, "tokens_per_s")}
        rows[name]["peak_rss_gb"] = peak_rss_gb()
        gc.collect()
    check_same_tokens(produced["generate"], produced["causal_lm"])
    return {"batch": len(prompts), "steps": produced["generate"].shape[1], **rows}


def check_same_tokens(reference: Any, generations: list[Any]) -> None:
    """The recorder must not change what is generated: greedy ids equal, row by row."""
    for row, gen in enumerate(generations):
        if not gen.ok:
            raise RuntimeError(f"CausalLM.generate failed on row {row}: {gen.error}")
        if gen.token_ids != reference[row].tolist()[: len(gen.token_ids)]:
            raise RuntimeError(f"row {row}: CausalLM.generate chose other tokens than generate")


def print_report(results: dict[str, Any]) -> None:
    columns = ("batch", "method", "tokens/s", "vs no log-probs", "peak RSS GB", "others' CPU")
    table = harness.table(
        f"Recording token log-probs, {results['model']} (median of repeats)",
        [column if column == "method" else (column, "right") for column in columns],
    )
    for row in results["batches"].values():
        floor = row["generate"]["tokens_per_s"]
        for name, label in METHODS.items():
            m = row[name]
            table.add_row(
                str(row["batch"]),
                label,
                f"{m['tokens_per_s']:.1f}",
                f"{ratio(m['tokens_per_s'], floor):.2f}x",
                f"{m['peak_rss_gb']:.2f}",
                busy_cell(m["others_cpu"]),
            )
        table.add_section()
    console.print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from slm_agents.console import quiet_transformers
    from slm_agents.models import CausalLM

    quiet_transformers()
    results = harness.start("logprobs")
    started = time.perf_counter()
    problems = harness.data_file("humaneval", "problems.jsonl").read_text(encoding="utf-8")
    prompts = [json.loads(line)["prompt"] for line in problems.splitlines()]
    lm = CausalLM(args.model, device="cpu", batch_size=max(args.batches))  # one call, one batch
    results |= {
        "args": harness.settings_of(args),
        "model": args.model,
        "vocabulary": len(lm.tokenizer),
        "batches": {},
    }
    for batch in args.batches:
        console.print(f"batch {batch}: {args.new_tokens} new tokens x {args.repeats} repeats")
        row = measure_batch(lm, prompts[:batch], args.new_tokens, args.repeats)
        row["speedup_vs_output_scores"] = ratio(
            row["causal_lm"]["tokens_per_s"], row["output_scores"]["tokens_per_s"]
        )
        results["batches"][f"batch{batch}"] = row
    harness.finish(results, started, print_report, args.output)
    return results


if __name__ == "__main__":
    main()

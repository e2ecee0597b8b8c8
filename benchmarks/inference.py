"""Inference benchmark for the bundled models: how fast is "small" on this machine?

Why: the project's claim is that a 135M-parameter SLM and a 22M-parameter encoder do real agent
work on a plain CPU. This script puts numbers on that claim, measured in one run on one machine,
so the ratios between them (int8 vs fp32, batch 8 vs batch 1, warm vs cold load) can be trusted
even where the absolute numbers differ from machine to machine.

What it measures:

1. **Decode speed** of the causal SLMs (SmolLM2-135M-Instruct, bundled as a Q4_1 GGUF, and
   the Gemma-3-270M base model, Q4_K_M; both dequantized to fp32 by transformers), in fp32 and
   in int8 (torch dynamic quantization, i.e. ``CausalLM(quantize="int8")``), at batch 1 and
   batch 16 (``--models`` picks them). Each run calls
   ``lm.model.generate`` directly with ``min_new_tokens == max_new_tokens`` and greedy decoding,
   so every row produces exactly ``--new-tokens`` tokens whatever the text says.
   tokens/s = batch x new tokens / wall time of the ``generate`` call, which includes the
   prefill of a short (~45-token) prompt. ``CausalLM.generate`` adds log-prob bookkeeping
   and stops at end-of-sequence, so it is not used for the speed numbers.
2. **Encoder throughput**: texts/s of ``EncoderClassifier.predict`` in zero-shot mode over
   a fixed sample of Banking77 tickets (their categories, in words, are the labels; texts are
   mean-pooled all-MiniLM-L6-v2 embeddings compared with the label embeddings).
3. **Load time** of ``CausalLM()``, each in a fresh Python process whose imports (torch,
   transformers) are done and timed *before* the clock starts: *cold* = empty cache folder
   (``SLM_AGENTS_CACHE`` set to a new temp dir), so the GGUF is parsed, dequantized and saved as
   safetensors; *warm* = the same folder again, now holding the converted safetensors.
4. **llama.cpp reference** (only if ``llama_cpp`` from llama-cpp-python is importable; ``make
   bench-reference`` builds it from source, ~5 min): decode tokens/s at batch 1 on the same
   GGUF file, same prompt token ids, same thread count, fixed length (the token loop ignores
   end-of-sequence). Not a dependency; skipped with a note.

The ``ratios`` object holds, per model, ``<model>_b1_vs_llamacpp`` (our faster precision at
batch 1 over llama.cpp) and ``<model>_b16_vs_b1`` (int8, 16 streams over one); ``goals`` judges
them against the speed goals (>= 1.0x llama.cpp, >= 4x at 16 streams). The machine facts
include torch's CPU capability and the CPU's vector flags.

Every measurement is preceded by an untimed warm-up and reported as the median of
``--repeats`` runs (all runs are kept in the JSON). The benchmark works in its own temp cache
folder, so it never touches (or benefits from) your ``~/.cache/slm-agents``.

Run it on a quiet machine. Each measurement also records ``others_cpu``, the share of the CPUs
that *other* processes used meanwhile (the "Others' CPU" column); above 10% it is shown in red
and the run ends with a warning. On 2 cores a busy neighbour (a test run, a notebook) can make
fp32 decode 10x slower or worse, while int8 suffers less (see ``harness.OtherCpuUse``).

Run it from the repository root::

    .venv/bin/python benchmarks/inference.py --quick    # smoke run, ~80 s on 2 idle cores
    .venv/bin/python benchmarks/inference.py            # full run, ~5 min on 2 idle cores
    .venv/bin/python benchmarks/inference.py --repeats 5 --new-tokens 128 --json /tmp/b.json

It prints a table and writes JSON (default ``benchmarks/results/inference.json``) with the
machine facts (CPU, torch version and threads, date) next to the numbers. ``--skip-loads``
leaves out the load timing (the slowest part); ``--help`` lists the other options.
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import harness
from harness import PROMPTS, REPO_ROOT, TICKETS, OtherCpuUse, console, measure, ratio

CAUSAL = "smollm2-135m-instruct"  # the model of the load timing
# Decoded models, by the short name the ratios use; both ship as GGUF (Q4_1, Q4_K_M).
DECODED = {"smollm2": CAUSAL, "gemma3": "gemma-3-270m"}
BIG_BATCH = 16  # batch 1 decodes the first of the PROMPTS, batch 16 all of them twice
# The speed goals: one stream at least llama.cpp's speed, 16 streams at least 4x one stream.
GOALS = {"one_stream_vs_llamacpp": 1.0, "b16_vs_b1": 4.0}
DEFAULTS = {"repeats": (3, 1), "new_tokens": (64, 16), "texts": (512, 64)}  # (full, --quick)

# Runs in a fresh interpreter: imports first (timed apart), then the load that is measured.
LOAD_SCRIPT = """
import json, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from slm_agents.models import CausalLM
t1 = time.perf_counter()
lm = CausalLM({model!r}, device="cpu")
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""


# ---------------------------------------------------------------------------------- helpers
def prompt_text(lm: Any, prompt: str) -> str:
    """The prompt exactly as ``CausalLM.generate`` renders it: one user message in the chat
    template, or plain text after the BOS for a base model without one (Gemma-3-270M)."""
    return lm._render(prompt)


def read_tickets(path: Path, limit: int) -> tuple[list[str], list[str], str]:
    """``limit`` Banking77 tickets (a fixed random sample) with their gold categories."""
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
        source = str(path)
    else:
        console.print(
            f"[yellow]note:[/] {path} not found; the encoder runs on "
            f"{len(TICKETS)} built-in sentences instead (pass --data to fix)"
        )
        rows, source = list(TICKETS), "built-in sentences"
    rows = random.Random(0).sample(rows, limit) if len(rows) > limit else rows
    return [t for t, _ in rows], [c for _, c in rows], source


# ---------------------------------------------------------------------------------- loads
def measure_loads(repeats: int, workdir: Path) -> tuple[dict[str, Any], Path]:
    """Cold and warm ``CausalLM()`` load times, each in a fresh process.

    Returns the results and the cache folder that now holds the converted model, so the rest
    of the benchmark can load from it quickly.
    """

    def load_in_subprocess(cache: Path) -> dict[str, float]:
        env = {**os.environ, "SLM_AGENTS_CACHE": str(cache)}
        proc = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT.format(model=CAUSAL)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"load subprocess failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    warm_cache = workdir / "cache"
    cold, warm = [], []
    with OtherCpuUse() as cold_others:
        for i in range(repeats):
            console.print(f"  cold load {i + 1}/{repeats} (GGUF -> safetensors, empty cache)")
            cache = warm_cache if i == 0 else workdir / f"cold-{i}"
            cold.append(load_in_subprocess(cache))
            if cache != warm_cache:
                shutil.rmtree(cache, ignore_errors=True)
    with OtherCpuUse() as warm_others:
        for i in range(repeats):
            console.print(f"  warm load {i + 1}/{repeats} (converted safetensors)")
            warm.append(load_in_subprocess(warm_cache))

    def describe(runs: list[dict[str, float]], others: OtherCpuUse) -> dict[str, Any]:
        return {
            "runs_s": [round(r["load_s"], 3) for r in runs],
            "median_s": round(statistics.median(r["load_s"] for r in runs), 3),
            "import_median_s": round(statistics.median(r["import_s"] for r in runs), 3),
            "others_cpu": others.fraction,
        }

    loads = {"cold": describe(cold, cold_others), "warm": describe(warm, warm_others)}
    return loads, warm_cache


# ---------------------------------------------------------------------------------- decode
def measure_decode(lm: Any, batch: int, new_tokens: int, repeats: int) -> dict[str, Any]:
    """tokens/s of greedy decoding of exactly ``new_tokens`` tokens for ``batch`` prompts."""
    import torch

    texts = [prompt_text(lm, p) for p in (PROMPTS * 2)[:batch]]
    enc = lm.tokenizer(
        texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    )
    fixed = dict(
        do_sample=False,
        temperature=None,  # the model's generation config sets sampling defaults; unset them
        top_p=None,
        top_k=None,
        pad_token_id=lm.tokenizer.pad_token_id,
    )

    def run(n: int = new_tokens) -> None:
        with torch.inference_mode():
            out = lm.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, **fixed)
        produced = out.shape[1] - enc.input_ids.shape[1]
        assert produced == n, f"expected {n} new tokens, got {produced}"

    run(4)  # warm-up: first-call allocations, int8 kernel setup
    result = measure(run, repeats, batch * new_tokens, "tokens_per_s")
    result["per_stream_tokens_per_s"] = round(result["tokens_per_s"] / batch, 2)
    result["prompt_tokens"] = int(enc.input_ids.shape[1])
    return {"batch": batch, "new_tokens": new_tokens, **result}


def bench_causal(model: str, quantize: str | None, new_tokens: int, repeats: int) -> dict[str, Any]:
    from slm_agents.models import CausalLM

    label = quantize or "fp32"
    start = time.perf_counter()
    lm = CausalLM(model, device="cpu", quantize=quantize)
    load_s = time.perf_counter() - start
    rows = {}
    for batch in (1, BIG_BATCH):
        console.print(f"  {model} {label} batch {batch} ({new_tokens} tokens x {repeats})")
        rows[f"batch{batch}"] = measure_decode(lm, batch, new_tokens, repeats)
    prompt_ids = lm.tokenizer(prompt_text(lm, PROMPTS[0]), add_special_tokens=False)
    del lm
    gc.collect()
    return {
        "model": model,
        "precision": label,
        "load_in_process_s": round(load_s, 3),
        **rows,
        "_prompt_ids": prompt_ids.input_ids,  # reused by the llama.cpp reference
    }


# ---------------------------------------------------------------------------------- encoder
def bench_encoder(data: Path, n_texts: int, repeats: int) -> dict[str, Any]:
    from slm_agents.models import EncoderClassifier

    texts, gold, source = read_tickets(data, n_texts)
    categories = sorted(set(gold))
    # Zero-shot: each category's description is its name in words ("card arrival").
    labels = {c: c.replace("_", " ") for c in categories}
    start = time.perf_counter()
    clf = EncoderClassifier(labels=labels, device="cpu")
    load_s = time.perf_counter() - start
    clf.predict(texts[: clf.batch_size])  # warm-up
    console.print(f"  encoder predict ({len(texts)} texts x {repeats})")
    predictions: list[Any] = []

    def run() -> None:
        predictions[:] = clf.predict(texts)

    result = measure(run, repeats, len(texts), "texts_per_s")
    correct = sum(p.label == g for p, g in zip(predictions, gold, strict=True))
    return {
        "model": clf.name,
        "mode": clf.mode,
        "data": source,
        "texts": len(texts),
        "labels": len(categories),
        "batch_size": clf.batch_size,
        "load_in_process_s": round(load_s, 3),
        **result,
        "zero_shot_accuracy": round(correct / len(texts), 3),  # a sanity check, not the point
    }


# ---------------------------------------------------------------------------------- llama.cpp
def bench_llama_cpp(
    model: str, prompt_ids: list[int], new_tokens: int, repeats: int, threads: int
) -> dict[str, Any]:
    """Batch-1 decode through llama.cpp on the bundled GGUF file, if llama-cpp-python is here."""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        return {"skipped": "llama_cpp not importable (make bench-reference builds it)"}
    from slm_agents.models.sources import resolve

    resolved = resolve(model)
    gguf = Path(resolved.location) / str(resolved.gguf_file)
    start = time.perf_counter()
    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=threads, verbose=False)
    load_s = time.perf_counter() - start

    def run(n: int = new_tokens) -> None:
        llm.reset()  # forget the previous run, so the prompt is evaluated again every time
        # The token loop has no end-of-sequence check: it yields until we stop taking tokens.
        tokens = list(itertools.islice(llm.generate(prompt_ids, temp=0.0), n))
        assert len(tokens) == n, f"expected {n} new tokens, got {len(tokens)}"

    run(4)  # warm-up
    console.print(f"  llama.cpp {model} batch 1 ({new_tokens} tokens x {repeats})")
    result = measure(run, repeats, new_tokens, "tokens_per_s")
    llm.close()  # its memory back before the next model loads
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "gguf": gguf.name,
        "threads": threads,
        "load_s": round(load_s, 3),
        "batch1": {"batch": 1, "new_tokens": new_tokens, **result},
    }


# ---------------------------------------------------------------------------------- report
def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Speedups between measurements of this run (a value > 1 means the first is faster).

    ``<model>_b1_vs_llamacpp`` takes our faster precision at batch 1 (the one a user would
    pick); ``<model>_b16_vs_b1`` is total decode throughput at 16 streams over one stream, int8.
    """
    big = f"batch{BIG_BATCH}"
    ratios: dict[str, float | None] = {}
    for short, rows in results["decode"].items():
        one = {precision: row["batch1"]["tokens_per_s"] for precision, row in rows.items()}
        many = {precision: row[big]["tokens_per_s"] for precision, row in rows.items()}
        llama = results["llama_cpp"].get(short, {})
        llama_tps = llama["batch1"]["tokens_per_s"] if "batch1" in llama else None
        ratios[f"{short}_b1_vs_llamacpp"] = ratio(max(one.values()), llama_tps)
        ratios[f"{short}_int8_b1_vs_llamacpp"] = ratio(one["int8"], llama_tps)
        ratios[f"{short}_fp32_b1_vs_llamacpp"] = ratio(one["fp32"], llama_tps)
        ratios[f"{short}_b16_vs_b1"] = ratio(many["int8"], one["int8"])
        ratios[f"{short}_b16_vs_b1_fp32"] = ratio(many["fp32"], one["fp32"])
        ratios[f"{short}_int8_over_fp32_b1"] = ratio(one["int8"], one["fp32"])
    if "loads" in results:
        loads = results["loads"]
        ratios["warm_over_cold_load"] = ratio(loads["warm"]["median_s"], loads["cold"]["median_s"])
    return ratios


def judge(ratios: dict[str, float | None]) -> dict[str, Any]:
    """The speed goals against this run's ratios (None: not measured, e.g. no llama.cpp)."""

    def goal(value: float | None, at_least: float) -> dict[str, Any]:
        if value is None:
            return {"goal": at_least, "value": None, "met": None}
        return harness.at_least(value, at_least)

    one, many = GOALS["one_stream_vs_llamacpp"], GOALS["b16_vs_b1"]
    return {
        "smollm2_b1_vs_llamacpp": goal(ratios.get("smollm2_b1_vs_llamacpp"), one),
        "gemma3_b1_vs_llamacpp": goal(ratios.get("gemma3_b1_vs_llamacpp"), one),
        "smollm2_b16_vs_b1": goal(ratios.get("smollm2_b16_vs_b1"), many),
    }


def spread(runs: list[float]) -> str:
    """The range of the timed runs, so a noisy median is visible at a glance."""
    return f"{min(runs):.2f}-{max(runs):.2f} s" if len(runs) > 1 else f"{runs[0]:.2f} s"


def print_report(results: dict[str, Any]) -> None:
    machine, settings = results["machine"], results["settings"]
    table = harness.table(
        f"Inference on {machine['cpu_count']} CPUs ({machine['cpu_model']}), torch "
        f"{machine['torch']} with {machine['torch_threads']} threads, median of "
        f"{settings['repeats']} runs",
        [
            "Measurement",
            ("Median", "right"),
            "Unit",
            ("Runs", "right"),
            ("Others' CPU", "right"),
            "Notes",
        ],
    )

    def add(name: str, value: str, unit: str, r: dict[str, Any], note: str) -> None:
        others = harness.busy_cell(r.get("others_cpu"))
        table.add_row(name, value, unit, spread(r["runs_s"]), others, note)

    n = settings["new_tokens"]
    for short, rows in results["decode"].items():
        for precision, row in rows.items():
            for key in ("batch1", f"batch{BIG_BATCH}"):
                r = row[key]
                note = f"{n} new tokens after a {r['prompt_tokens']}-token prompt"
                if r["batch"] > 1:
                    note += f"; {r['per_stream_tokens_per_s']:.1f} tok/s per stream"
                add(
                    f"{short} {precision}, batch {r['batch']}",
                    f"{r['tokens_per_s']:.1f}",
                    "tok/s",
                    r,
                    note,
                )
        llama = results["llama_cpp"].get(short, {})
        if "batch1" in llama:
            r = llama["batch1"]
            add(
                f"{short} llama.cpp, batch 1",
                f"{r['tokens_per_s']:.1f}",
                "tok/s",
                r,
                f"same GGUF ({llama['gguf']}) and prompt ids, {llama['threads']} threads",
            )
        else:
            skipped = llama.get("skipped", "not run")
            table.add_row(f"{short} llama.cpp, batch 1", "-", "", "", "", f"skipped: {skipped}")
    enc = results["encoder"]
    add(
        "MiniLM zero-shot classify",
        f"{enc['texts_per_s']:.1f}",
        "texts/s",
        enc,
        f"{enc['texts']} tickets, {enc['labels']} labels, batch {enc['batch_size']}; "
        f"accuracy {enc['zero_shot_accuracy']:.2f}",
    )
    for kind, what in (("cold", "GGUF -> safetensors"), ("warm", "from safetensors cache")):
        if "loads" in results:
            r = results["loads"][kind]
            add(
                f"CausalLM() {kind} load",
                f"{r['median_s']:.2f}",
                "s",
                r,
                f"{what}; imports ({r['import_median_s']:.1f} s) not counted",
            )
    console.print(table)
    harness.print_ratios("Ratios within this run", results["ratios"])
    goals = harness.table("Speed goals (ratios of this run)", ["Goal", ("Value", "right"), "Met"])
    for name, g in results["goals"].items():
        value = "-" if g["value"] is None else f"{g['value']:.2f}x"
        verdict = "not measured" if g["met"] is None else harness.verdict(g["met"])
        goals.add_row(f"{name.replace('_', ' ')} >= {g['goal']:g}x", value, verdict)
    console.print(goals)


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Decode, classify and load speed of the bundled SLM and encoder on CPU.",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per measurement [3; quick 1]")
    parser.add_argument("--new-tokens", type=int, help="tokens decoded per run [64; quick 16]")
    parser.add_argument("--texts", type=int, help="tickets classified per run [512; quick 64]")
    parser.add_argument(
        "--data", type=Path, help="Banking77 CSV [banking77/test.csv of the data folder]"
    )
    harness.add_output_option(parser, "inference")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [torch's default]")
    parser.add_argument("--skip-loads", action="store_true", help="skip cold/warm load timing")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(DECODED),
        default=list(DECODED),
        help="models to decode [all: smollm2 gemma3]",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: smaller defaults (1 repeat, 16 tokens)"
    )
    args = parser.parse_args(argv)
    harness.fill_defaults(args, DEFAULTS)
    if args.repeats < 1 or args.new_tokens < 1 or args.texts < 1:
        parser.error("--repeats, --new-tokens and --texts must be positive")
    args.output = harness.output_path(args, "inference")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would interleave with the log
    # torch deprecates the quantized tensors behind quantize_dynamic; CausalLM still uses it.
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    results = harness.start("inference")
    started = time.perf_counter()
    results["settings"] = {
        "repeats": args.repeats,
        "new_tokens": args.new_tokens,
        "texts": args.texts,
        "quick": args.quick,
        "decode_method": "model.generate, greedy, min_new_tokens == max_new_tokens",
    }
    workdir = Path(tempfile.mkdtemp(prefix="slm-bench-"))
    try:
        if args.skip_loads:
            cache = workdir / "cache"
        else:
            console.print("[bold]Loads[/] (fresh process each)")
            results["loads"], cache = measure_loads(args.repeats, workdir)
        # Everything below loads from the benchmark's own cache (converted on first use).
        os.environ["SLM_AGENTS_CACHE"] = str(cache)

        results["decode"], results["llama_cpp"] = {}, {}
        for short, model in DECODED.items():
            if short not in args.models:
                continue
            console.print(f"[bold]Decode {model}[/]")
            fp32 = bench_causal(model, None, args.new_tokens, args.repeats)
            int8 = bench_causal(model, "int8", args.new_tokens, args.repeats)
            prompt_ids = fp32.pop("_prompt_ids")
            int8.pop("_prompt_ids")
            results["decode"][short] = {"fp32": fp32, "int8": int8}
            reference = bench_llama_cpp(model, prompt_ids, args.new_tokens, args.repeats, threads)
            results["llama_cpp"][short] = reference
            if "skipped" in reference:
                console.print(f"  llama.cpp skipped: {reference['skipped']}")

        console.print("[bold]Encoder[/]")
        data = args.data or harness.data_file("banking77", "test.csv")
        results["encoder"] = bench_encoder(data, args.texts, args.repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results["ratios"] = compute_ratios(results)
    results["goals"] = judge(results["ratios"])
    harness.finish(results, started, print_report, args.output)
    return results


if __name__ == "__main__":
    main()

"""What every benchmark here needs, in one place: machine facts, CPU contention, timing,
tables and the JSON result file.

Why: a number is only worth quoting next to the machine it came from and the share of the CPU
that other processes took meanwhile (on 2 cores a busy neighbour slows torch 10x). Every script
measures, reports and records these the same way, so their results can be read side by side.

Scripts import it as ``import harness``: ``python benchmarks/<script>.py`` puts this folder on
``sys.path`` itself, and ``slm_agents`` comes from the installed package. A script's life::

    results = harness.start("inference")          # checks the machine is quiet, records facts
    started = time.perf_counter()
    ...                                            # measurements, each with others_cpu
    harness.finish(results, started, print_report, path)   # report, flag, write JSON

Heavy imports (torch, transformers, psutil) stay inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BUSY_WARNING = 0.1  # flag numbers taken while other processes used more of the CPUs than this

# A wider table when the output goes to a file or a pipe (rich assumes 80 columns there).
console = Console() if sys.stdout.isatty() else Console(width=140)

# Eight customer-support style prompts and tickets, shared by the speed benchmarks so their
# numbers describe the same requests.
PROMPTS = [
    "My card was charged twice for the same purchase. What should I do?",
    "How long does a bank transfer to another country usually take?",
    "I forgot my PIN. How can I reset it?",
    "Why was my top-up declined this morning?",
    "Can I change the currency of my account?",
    "Someone I don't know made a payment with my card. Please help.",
    "Where can I see the exchange rate you applied to my last payment?",
    "My new card has not arrived yet. It has been ten days.",
]
TICKETS = [  # (text, BANKING77 category)
    ("I still have not received my new card.", "card_arrival"),
    ("My card payment was declined at the shop.", "declined_card_payment"),
    ("The money I sent to my friend has not arrived.", "transfer_not_received_by_recipient"),
    ("How do I top up my account by bank transfer?", "top_up_by_bank_transfer_charge"),
    ("Why was I charged an extra fee for withdrawing cash?", "cash_withdrawal_charge"),
    ("I lost my card yesterday, please block it.", "lost_or_stolen_card"),
    ("What exchange rate do you use?", "exchange_rate"),
    ("How can I change my PIN?", "change_pin"),
]


# ------------------------------------------------------------------------------ data, arguments
def data_file(*parts: str) -> Path:
    """A path inside the bundled data folder (``slm_agents.datasets.data_dir()``), e.g.
    ``data_file("banking77", "test.csv")``; it may not exist (callers say what then)."""
    from slm_agents.datasets import data_dir

    return data_dir().joinpath(*parts)


def fill_defaults(args: argparse.Namespace, defaults: dict[str, tuple[Any, Any]]) -> None:
    """Options left unset get their ``(full, --quick)`` default, by ``args.quick``."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def add_output_option(parser: argparse.ArgumentParser, benchmark: str) -> None:
    """``--output`` (alias ``--json``): where the result file goes; see :func:`output_path`."""
    parser.add_argument(
        "--output",
        "--json",
        type=Path,
        help=f"result file [benchmarks/results/{benchmark}.json; --quick: {benchmark}.quick.json]",
    )


def output_path(args: argparse.Namespace, benchmark: str) -> Path:
    """``--output``, else ``results/<benchmark>.json``; a ``--quick`` smoke run writes
    ``<benchmark>.quick.json`` (git-ignored), so it never replaces a result worth quoting."""
    if args.output is not None:
        return args.output
    return RESULTS / (f"{benchmark}.quick.json" if args.quick else f"{benchmark}.json")


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


# ------------------------------------------------------------------------------ CPU contention
class OtherCpuUse:
    """Context manager: the share of the machine's CPU time that *other* processes used inside.

    Why it matters: on a 2-core machine any other busy process wrecks the numbers. torch's two
    threads meet at a barrier after every fp32 matmul, and a thread that has lost its core makes
    the other wait a whole scheduler slice (measured: a 5x576 @ 576x1536 matmul went from
    0.16 ms to 24 ms). Every measurement records this share so spoiled numbers can be spotted.
    ``fraction`` is None where /proc/stat does not exist; ``others_s`` and ``total_s`` (CPU
    seconds) let several blocks be summed.
    """

    fraction: float | None = None
    others_s = total_s = 0.0

    @staticmethod
    def _counters() -> tuple[float, float, float] | None:
        """(busy, total) CPU seconds of the whole machine, and CPU seconds of this process
        and its finished children."""
        stat = Path("/proc/stat")
        if not stat.exists():
            return None
        ticks = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        idle = ticks[3] + ticks[4]  # idle + iowait
        ours = sum(os.times()[:4])  # user + system, self + children
        return (sum(ticks) - idle) / hz, sum(ticks) / hz, ours

    def __enter__(self) -> OtherCpuUse:
        self._start = self._counters()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._counters()
        if self._start is None or end is None:
            return
        busy, total, ours = (b - a for a, b in zip(self._start, end, strict=True))
        self.others_s, self.total_s = max(busy - ours, 0.0), total
        self.fraction = round(self.others_s / max(total, 1e-9), 3)


class ClusterCpuUse(OtherCpuUse):
    """``OtherCpuUse`` where this process's live descendants (Ray's processes) count as ours.

    A Ray actor is not a child this process waits for, so ``os.times()`` never sees its CPU
    time; without this the actors' own work would read as "others". Create or kill no actor
    inside the block: a process that dies there takes its CPU time with it.
    """

    @staticmethod
    def _counters() -> tuple[float, float, float] | None:
        import psutil

        # The children first: walking them takes ~1 ms of our CPU, which must fall either
        # outside the block (at its start) or inside both counters (at its end), not only
        # inside the machine's busy time.
        children = 0.0
        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:  # it ended meanwhile
                continue
            children += times.user + times.system
        base = OtherCpuUse._counters()  # the machine's counters, then this process's
        if base is None:
            return None
        busy, total, ours = base
        return busy, total, ours + children


def check_quiet(probe: type[OtherCpuUse] = OtherCpuUse) -> float | None:
    """One idle second: is anything else running? Warns when it is; returns others' CPU share."""
    with probe() as before:
        time.sleep(1.0)
    if (before.fraction or 0) > BUSY_WARNING:
        console.print(
            f"[yellow]warning:[/] other processes use {before.fraction:.0%} of the CPUs; "
            "the numbers will be low and noisy (each one records others_cpu in the JSON)"
        )
    return before.fraction


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def contended(results: dict[str, Any], path: str = "") -> list[str]:
    """Paths (like ``decode.fp32.batch8``) of the measurements taken while others were busy."""
    found = []
    for key, value in results.items():
        if isinstance(value, dict):
            if (value.get("others_cpu") or 0) > BUSY_WARNING:
                found.append(path + key)
            found += contended(value, f"{path}{key}.")
    return found


# ------------------------------------------------------------------------------ timing
def timed(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """Run ``fn`` once: its value, wall seconds and other processes' CPU share meanwhile."""
    with OtherCpuUse() as others:
        started = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - started
    return value, seconds, others.fraction


def timed_batches(agent: Any, items: Sequence[Any], batch: int) -> tuple[list, float, float | None]:
    """All of ``items`` through ``agent.run_batch``, ``batch`` at a time: results, wall seconds,
    other processes' CPU share."""

    def run() -> list[Any]:
        results: list[Any] = []
        for i in range(0, len(items), batch):
            results.extend(agent.run_batch(list(items[i : i + batch])))
        return results

    return timed(run)


def measure(fn: Callable[[], Any], repeats: int, work: float, unit: str) -> dict[str, Any]:
    """Time ``repeats`` calls of ``fn`` (warm it up before): the runs, their median, ``work``
    per median second as ``unit`` and others' CPU share."""
    seconds = []
    with OtherCpuUse() as others:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "runs_s": [round(s, 4) for s in seconds],
        "median_s": round(median, 4),
        unit: round(work / median, 2),
        "others_cpu": others.fraction,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def at_least(value: float, goal: float, n: int | None = None) -> dict[str, Any]:
    """A goal's verdict as the result files record it.

    With ``n`` (the items a proportion was measured on), a value within the 95% binomial
    margin of the goal is not resolved (``met: None``): a few items' luck is not "met".
    """
    margin = 1.96 * math.sqrt(value * (1 - value) / n) if n else 0.0
    met = True if value - margin >= goal else False if value + margin < goal else None
    return {"goal": goal, "value": value, "n": n, "margin": round(margin, 4), "met": met}


def verdict(met: bool | None) -> str:
    """How a report prints a goal's ``met``."""
    return {True: "[green]met[/]", False: "[red]not met[/]", None: "[yellow]not resolved[/]"}[met]


# ------------------------------------------------------------------------------ tables
def table(title: str, columns: Iterable[str | tuple[str, str]]) -> Table:
    """A rich table; a column is a name (left-justified) or ``(name, justify)``."""
    out = Table(title=title)
    for column in columns:
        name, justify = (column, "left") if isinstance(column, str) else column
        out.add_column(name, justify=justify)
    return out


def busy_cell(others: float | None) -> str:
    """Others' CPU share for a table cell, red above ``BUSY_WARNING``."""
    cell = "?" if others is None else f"{others:.0%}"
    return f"[red]{cell}[/]" if others is not None and others > BUSY_WARNING else cell


def print_ratios(title: str, ratios: dict[str, float | None]) -> None:
    """``{"int8_over_fp32_batch1": 1.4}`` as a two-column table of ``1.40x`` values."""
    out = table(title, ["Ratio", ("Value", "right")])
    for name, value in ratios.items():
        label = name.replace("llama_cpp", "llama.cpp").replace("_", " ")
        out.add_row(label, "-" if value is None else f"{value:.2f}x")
    console.print(out)


# ------------------------------------------------------------------------------ results file
def machine_facts() -> dict[str, Any]:
    """The machine and library versions a result was measured with."""
    import torch
    import transformers

    cpu_model = platform.processor() or platform.machine()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    # The kernels torch picks (AVX2, AVX-512, VNNI) move absolute speeds a lot between
    # machines of one kind: only ratios within a run compare, and these say why.
    vector = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in {"fma", "f16c"})
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_vector_flags": vector,
    }


def start(benchmark: str, probe: type[OtherCpuUse] = OtherCpuUse, **machine: Any) -> dict[str, Any]:
    """A new result: checks the machine is quiet (``probe``), records its facts and ``machine``
    extras (library versions the benchmark adds)."""
    others_before = check_quiet(probe)
    return {
        "benchmark": benchmark,
        "machine": {
            **machine_facts(),
            **machine,
            "others_cpu_before": others_before,
            "loadavg_before": loadavg(),
        },
    }


def carried_parts(path: Path, names: list[str], section: str | None = None) -> dict[str, Any]:
    """The parts ``names`` of the JSON a previous run wrote to ``path``, each marked with when it
    was measured (``carried_from``).

    Why: a benchmark's parts take minutes to an hour each; rerunning one (``--skip`` the others)
    should not erase the others' figures, nor pass them off as new.
    """
    if not names or not path.exists():
        return {}
    previous = json.loads(path.read_text())
    parts = previous.get(section, {}) if section else previous
    date = previous.get("machine", {}).get("date", "an earlier run")
    return {
        name: {**parts[name], "carried_from": parts[name].get("carried_from", date)}
        for name in names
        if name in parts
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write atomically: an interrupted run leaves the previous result file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)


def finish(
    results: dict[str, Any], started: float, report: Callable[[dict[str, Any]], None], path: Path
) -> None:
    """The ending of every benchmark: report, flag contended measurements, write JSON."""
    results["machine"]["loadavg_after"] = loadavg()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["contended"] = contended(results)
    report(results)
    if results["contended"]:
        console.print(
            f"[yellow]warning:[/] {len(results['contended'])} measurements ran while other "
            f"processes used more than {BUSY_WARNING:.0%} of the CPUs (red above); "
            "rerun on a quiet machine before trusting them"
        )
    write_json(results, path)
    console.print(f"wrote {path} ({results['elapsed_s']:.0f} s in all)")

"""A stream of logged LLM calls of three mixed tasks, without task labels: the flywheel's test bed.

What a team's LLM tier might log over a few weeks: support tickets routed to an intent
(BANKING77), receipts whose four fields are extracted as JSON (SROIE), and Python functions
completed from their docstring (HumanEval), interleaved in a seeded shuffled order with
timestamps spread over ``weeks`` weeks. Nothing in a call says which task it is (``meta``
holds only the system prompt and, for receipts, the JSON ``response_format``); the task of each
call is returned beside the calls (:attr:`MixedStream.task_of`) so a benchmark can score the
discovered clusters against it (adjusted Rand index).

Offline there is no strong LLM to ask, so **the "LLM answers" are the data sets' labels**
standing in for one: a ticket's intent, a receipt's fields as the data set gives them (a field
it lacks is ``""``), a problem's canonical solution. A real LLM would sometimes be wrong; these
answers never are.

Usage is counted with a real tokenizer, the bundled SmolLM2 one (a stand-in for the hosted
model's own): ``prompt_tokens`` is the whole chat prompt (system prompt, the input, the chat
template's tokens), ``completion_tokens`` the answer's text (JSON as one line). The cost is the
default price table's ``llm`` price (:data:`slm_agents.pricing.HOSTED_LLM`), so cost shares
are those of a hosted model priced per token. The router's system prompt lists all 77 intents,
as a router prompt must, so a ticket costs mostly its system prompt.

Rows are drawn from a seeded shuffle of each data set (BANKING77's train split first, then its
test split), so :func:`next_week` continues where the stream stopped and never repeats an input
of it. SROIE holds two receipts twice: a stream of all 450 has two exact repeats, as real logs
do (curation drops them).
"""

from __future__ import annotations

import csv
import functools
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slm_agents.finetune.flywheel.calls import Call, parse_time, write_calls
from slm_agents.pricing import DEFAULT_TABLE, HOSTED_LLM

MODEL = "gpt-4o-mini"  # the model the calls are logged as
TOKENIZER = "smollm2-135m-instruct"  # counts the tokens (the bundled one; no network)
DEFAULT_START = "2026-11-02T00:00:00+00:00"  # a Monday: the stream's first week begins here
WEEK = 7 * 24 * 3600
TASKS = ("tickets", "receipts", "coding")

RECEIPT_SYSTEM = (
    "You extract the key fields of a scanned shop receipt. Read the OCR lines and answer with "
    'one JSON object {"company", "date", "address", "total"}, each value copied as printed on '
    'the receipt ("" when it is not there).'
)
CODING_SYSTEM = (
    "You are a Python coding assistant. Complete the function whose signature and docstring "
    "you are given: answer with the code of its body only, indented, no explanation."
)


@dataclass
class MixedStream:
    """Calls of mixed tasks and, kept apart from them, the task of each call.

    ``taken`` counts the rows of each data set's shuffled pool used by this stream and the
    streams before it, ``numbered`` the calls numbered so far: :func:`next_week` continues
    from both. ``start`` and ``end`` (epoch seconds, UTC) bound the calls' times.
    """

    calls: list[Call]
    task_of: dict[str, str]  # call id -> "tickets", "receipts" or "coding"
    taken: dict[str, int]
    numbered: int
    start: float
    end: float
    seed: int
    data: Path

    def counts(self) -> dict[str, int]:
        """Calls per task in this stream."""
        counts = dict.fromkeys(TASKS, 0)
        for task in self.task_of.values():
            counts[task] += 1
        return counts

    def totals(self) -> dict[str, dict[str, float]]:
        """Per task: calls, prompt and completion tokens, and cost (USD)."""
        totals = {
            t: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0} for t in TASKS
        }
        for call in self.calls:
            row = totals[self.task_of[call.id]]
            row["calls"] += 1
            row["prompt_tokens"] += call.prompt_tokens
            row["completion_tokens"] += call.completion_tokens
            row["cost"] += call.cost or 0.0
        return totals


def mixed_stream(
    *,
    tickets: int = 3000,
    receipts: int = 450,
    coding: int = 100,
    weeks: int = 5,
    seed: int = 0,
    data: str | Path | None = None,
) -> list[Call]:
    """The calls of :func:`build_stream` alone (their tasks are not in them)."""
    return build_stream(
        tickets=tickets, receipts=receipts, coding=coding, weeks=weeks, seed=seed, data=data
    ).calls


def build_stream(
    *,
    tickets: int = 3000,
    receipts: int = 450,
    coding: int = 100,
    weeks: int = 5,
    seed: int = 0,
    data: str | Path | None = None,
    start: str | float | datetime | None = None,
) -> MixedStream:
    """A stream of ``tickets + receipts + coding`` calls over ``weeks`` weeks from ``start``
    (default :data:`DEFAULT_START`), and the task of each call (module doc)."""
    from slm_agents.datasets import data_dir

    folder = Path(data) if data is not None else data_dir()
    begin = _epoch(start if start is not None else DEFAULT_START)
    return _stream(
        {"tickets": tickets, "receipts": receipts, "coding": coding},
        weeks=weeks,
        seed=seed,
        data=folder,
        begin=begin,
        taken=dict.fromkeys(TASKS, 0),
        numbered=0,
    )


def next_week(
    previous: MixedStream,
    *,
    tickets: int = 600,
    receipts: int = 0,
    coding: int = 0,
    weeks: int = 1,
) -> MixedStream:
    """New calls in the ``weeks`` after ``previous`` ends: rows of the same data sets that no
    earlier stream used, no input repeated from them, ids numbered on. An empty pool is an
    error saying how many rows are left (SROIE has 450 receipts, HumanEval 100 problems)."""
    return _stream(
        {"tickets": tickets, "receipts": receipts, "coding": coding},
        weeks=weeks,
        seed=previous.seed,
        data=previous.data,
        begin=previous.end,
        taken=dict(previous.taken),
        numbered=previous.numbered,
    )


def write_stream(path: str | Path, calls: list[Call] | MixedStream) -> Path:
    """Write the calls as a call log (``write_calls``); the task map is never written in it."""
    return write_calls(path, calls.calls if isinstance(calls, MixedStream) else calls)


# ------------------------------------------------------------------------------ internals
def _stream(
    wanted: dict[str, int],
    *,
    weeks: int,
    seed: int,
    data: Path,
    begin: float,
    taken: dict[str, int],
    numbered: int,
) -> MixedStream:
    for task, n in wanted.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{task} must be an integer >= 0, got {n!r}")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ValueError(f"weeks must be an integer >= 1, got {weeks!r}")
    total = sum(wanted.values())
    if total == 0:
        raise ValueError("no calls asked for: tickets, receipts and coding are all 0")

    rows: list[tuple[str, tuple[str, Any]]] = []  # (task, (input, answer))
    for task, n in wanted.items():
        pool = _pool(task, data, seed)
        picked, taken[task] = _take(pool, taken[task], n, task)
        rows.extend((task, row) for row in picked)
    random.Random(f"order-{seed}-{numbered}").shuffle(rows)

    span = weeks * WEEK
    if total > span:
        raise ValueError(f"{total} calls do not fit one a second into {weeks} week(s)")
    times = sorted(random.Random(f"times-{seed}-{numbered}").sample(range(span), total))
    systems = {"tickets": _router_system(data), "receipts": RECEIPT_SYSTEM, "coding": CODING_SYSTEM}
    usage = _count_tokens(rows, systems)

    calls, task_of = [], {}
    for i, ((task, (text, answer)), moment, (prompt, completion)) in enumerate(
        zip(rows, times, usage, strict=True)
    ):
        number = numbered + i + 1
        meta: dict[str, Any] = {"system": systems[task]}
        if task == "receipts":
            meta["response_format"] = {"type": "json_object"}
        call = Call(
            id=f"call-{number:06d}",
            input=text,
            output=answer,
            model=MODEL,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=DEFAULT_TABLE.cost(HOSTED_LLM, prompt, completion),
            timestamp=begin + moment,
            conversation_id=f"conv-{number:06d}",
            meta=meta,
        )
        calls.append(call)
        task_of[call.id] = task
    return MixedStream(
        calls=calls,
        task_of=task_of,
        taken=taken,
        numbered=numbered + total,
        start=begin,
        end=begin + span,
        seed=seed,
        data=data,
    )


def _take(pool: list[tuple[str, Any]], start: int, n: int, task: str):
    """``n`` rows from ``pool[start:]`` whose input no earlier row of the pool has (a first
    stream, ``start`` 0, keeps the data set's own repeats); and where the next take starts."""
    earlier = {text for text, _ in pool[:start]} if start else None
    picked, position = [], start
    while len(picked) < n and position < len(pool):
        text, answer = pool[position]
        position += 1
        if earlier is not None:
            if text in earlier:
                continue
            earlier.add(text)
        picked.append((text, answer))
    if len(picked) < n:
        raise ValueError(
            f"asked for {n} {task} calls but only {len(picked)} new rows are left "
            f"({len(pool)} in the data set, {start} used before)"
        )
    return picked, position


@functools.lru_cache(maxsize=16)
def _pool(task: str, data: Path, seed: int) -> list[tuple[str, Any]]:
    """Every (input, answer) row of a task's data set, in a seeded shuffled order."""
    rng = random.Random(f"{task}-{seed}")
    if task == "tickets":
        pool = []
        for split in ("train", "test"):  # train first; test only when more are asked for
            with (data / "banking77" / f"{split}.csv").open(newline="", encoding="utf-8") as f:
                rows = [(row["text"], row["category"]) for row in csv.DictReader(f)]
            rng.shuffle(rows)
            pool.extend(rows)
        return pool
    if task == "receipts":
        from slm_agents.finetune.recipes import load_receipts
        from slm_agents.specialists.receipts import FIELDS

        rows = [
            (r.text, {f: r.fields[f] for f in FIELDS})
            for r in load_receipts(data / "sroie" / "receipts.jsonl")
        ]
    else:
        with (data / "humaneval" / "problems.jsonl").open(encoding="utf-8") as f:
            problems = [json.loads(line) for line in f if line.strip()]
        rows = [(p["prompt"], p["canonical_solution"]) for p in problems]
    rng.shuffle(rows)
    return rows


def _router_system(data: Path) -> str:
    intents = json.loads((data / "banking77" / "categories.json").read_text(encoding="utf-8"))
    return (
        "You route the messages of a bank's customers. Answer with the one intent that fits "
        "the message, exactly as written in this list, and nothing else: " + ", ".join(intents)
    )


def _count_tokens(rows, systems: dict[str, str]) -> list[tuple[int, int]]:
    """(prompt tokens, completion tokens) per row with the bundled tokenizer.

    A prompt is the chat template around the system prompt and the input: its fixed part is
    counted once per system prompt and the input's tokens added (special tokens sit between
    them, so no merge crosses the boundary).
    """
    tokenizer = _tokenizer()
    fixed = {}
    for task, system in systems.items():
        template = tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": ""}],
            tokenize=False,
            add_generation_prompt=True,
        )
        fixed[task] = len(tokenizer(template, add_special_tokens=False)["input_ids"])
    inputs = [text for _, (text, _) in rows]
    answers = [a if isinstance(a, str) else json.dumps(a, ensure_ascii=False) for _, (_, a) in rows]
    encode = functools.partial(tokenizer, add_special_tokens=False)
    prompt_ids = encode(inputs)["input_ids"] if inputs else []
    answer_ids = encode(answers)["input_ids"] if answers else []
    return [
        (fixed[task] + len(p), len(a))
        for (task, _), p, a in zip(rows, prompt_ids, answer_ids, strict=True)
    ]


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from slm_agents.models.sources import ensure_converted, resolve

    resolved = resolve(TOKENIZER)
    location = str(ensure_converted(resolved)) if resolved.gguf_file else resolved.location
    return AutoTokenizer.from_pretrained(location)


def _epoch(value: str | float | datetime) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    seconds = parse_time(value)
    if seconds is None:
        raise ValueError(f"start must be a time, got {value!r}")
    return seconds

"""The main job: a team works through a file of requests; results stream to a JSONL file.

``run_job(spec, input, output)`` is what ``slm-agents run`` calls:

- **Resumable.** Each batch's results are appended to ``output`` and flushed to disk before the
  next batch starts. Run the same command again after an interruption: ids already in the
  output are skipped (a half-written last line from a kill is dropped first), so the output
  ends up holding each input exactly once.
- **Nothing lost.** Bad rows (empty text, wrong encoding, broken JSON) and failed requests are
  written as records with ``error`` set; the rest of the batch goes on.
- **One MLflow run** per job, with a trace per request; a resumed job reopens the same run (its
  id is kept in ``<output>.mlflow-run``). Params: the team spec; metrics: the summary.
- **Summary** (:class:`JobSummary`) over the whole output file, earlier runs of a resumed job
  included: who handled each request (SLMs alone, the LLM tier, or human review), accuracy on
  the requests handled automatically, escalations, p50/p95 latency, tokens, cost, and what
  sending every request to a hosted LLM would have cost at the same price table.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_agents.pricing import DEFAULT_TABLE, HOSTED_LLM, PriceTable
from slm_agents.requests_file import Request, read_requests
from slm_agents.result import Result, Task

if TYPE_CHECKING:
    from slm_agents.teamspec import TeamSpec

HANDLERS = ("slm", "llm", "review")  # a record's ``handled_by``


@dataclass
class JobSummary:
    output: str
    requests: int  # rows in the input
    processed_now: int  # handled by this call (the rest were already in the output)
    ok: int
    errors: int
    labelled: int  # labelled requests handled automatically (by SLMs or the LLM tier)
    accuracy: float | None  # over those: the answers nobody checks before they go out
    automatic_share: float | None  # of the successful requests: answered without review
    slm_share: float | None  # of the successful requests: handled by SLMs alone
    llm_share: float | None  # ... answered by the LLM tier
    review_share: float | None  # ... sent to human review
    reviewed_guess_accuracy: float | None  # the first agent's guesses on those sent to review
    escalated: int  # requests where a pattern or specialist escalated
    latency_p50_s: float | None
    latency_p95_s: float | None
    tokens: int
    cost_usd: float
    llm_only_cost_usd: float  # every successful request sent to a hosted LLM instead
    seconds: float  # wall time of this call
    run_id: str | None = None

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if isinstance(v, int | float)}

    def table_rows(self) -> dict[str, str]:
        """The summary as the CLI prints it: label -> value."""
        ratio = self.cost_usd / self.llm_only_cost_usd if self.llm_only_cost_usd else None
        return {
            "handled now / already done": f"{self.processed_now} / "
            f"{self.requests - self.processed_now}",
            "ok / errors": f"{self.ok} / {self.errors}",
            "accuracy, handled automatically": _share(self.accuracy, f" of {self.labelled}"),
            "handled automatically": _share(self.automatic_share),
            "by SLMs alone / LLM tier / human review": " / ".join(
                _share(s) for s in (self.slm_share, self.llm_share, self.review_share)
            ),
            "its first guess on those sent to review": _share(self.reviewed_guess_accuracy),
            "escalations": str(self.escalated),
            "latency p50 / p95": _latency(self.latency_p50_s, self.latency_p95_s),
            "tokens": f"{self.tokens:,}",
            "cost (price table)": f"${self.cost_usd:.6f}",
            "every request to a hosted LLM": f"${self.llm_only_cost_usd:.6f}"
            + ("" if ratio is None else f" ({ratio:.1%} of it spent)"),
            "wall time": f"{self.seconds:.1f} s",
        }


def _share(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.1%}{suffix}"


def _latency(p50: float | None, p95: float | None) -> str:
    if p50 is None or p95 is None:
        return "-"
    return f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms"


def run_job(
    spec_path: str | Path | TeamSpec,
    input_path: str | Path,
    output_path: str | Path,
    *,
    address: str | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    track: bool = True,
    progress: bool = True,
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> JobSummary:
    """Run the team of ``spec_path`` (a file, or a loaded :class:`TeamSpec`) over
    ``input_path``; append records to ``output_path``. Tickets a review agent takes are queued
    in ``<output>.review.jsonl`` unless the spec names a queue file."""
    from tqdm.auto import tqdm

    from slm_agents import tracking
    from slm_agents.teamspec import TeamSpec, load_team_spec

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    spec = spec_path if isinstance(spec_path, TeamSpec) else load_team_spec(spec_path)
    columns = spec.input
    requests = read_requests(input_path, columns.text_column, columns.id_column,
                             columns.label_column)[:limit]  # fmt: skip
    output = Path(output_path)
    done = completed_ids(output)
    todo = [r for r in requests if r.id not in done]
    llm_tier = {name for name, entry in spec.agents.items() if entry.tier == "llm"}
    run_file = output.with_name(output.name + ".mlflow-run")
    resume = run_file.read_text().strip() if run_file.exists() and done else None
    params = {"team": spec.model_dump(mode="json"), "input": str(input_path),
              "output": str(output), "requests": len(requests)}  # fmt: skip
    stored = tracking.raw_text(spec.privacy.store_raw)  # MLflow holds redacted text by default
    context = tracking.run(f"run:{spec.name}", params=params, resume=resume) if track else None
    with stored, context or contextlib.nullcontext() as run_id, tracking.without_model_spans():
        if run_id:
            run_file.write_text(run_id)
        if todo:
            team, entry = spec.build(address, review_queue=review_queue_of(output))
            bar = tqdm(total=len(requests), initial=len(requests) - len(todo),
                       desc=f"{spec.name}", unit="req", disable=not progress)  # fmt: skip
            try:
                with output.open("a", encoding="utf-8") as sink:
                    for batch in _chunks(todo, batch_size):
                        records = _run_batch(entry, batch, llm_tier, columns.label_field, track)
                        _append(sink, records)
                        if on_batch is not None:
                            on_batch(records)
                        bar.update(len(batch))
            finally:  # Ray-hosted agents free their actors, also when a batch raised
                bar.close()
                team.shutdown()
        summary = summarise(output, {r.id for r in requests}, len(requests), len(todo),
                            prices=PriceTable(spec.prices))  # fmt: skip
        summary.seconds = round(time.perf_counter() - started, 2)
        summary.run_id = run_id
        if track:
            tracking.log_metrics(summary.metrics())
    return summary


def _run_batch(
    entry: Any, batch: list[Request], llm_tier: set[str], label_field: str | None, track: bool
) -> list[dict]:
    """Run the readable requests as one batch; every request gets exactly one record."""
    from slm_agents import tracking

    readable = [r for r in batch if r.error is None]
    tasks = [Task(r.text or "", id=r.id, meta=dict(r.meta)) for r in readable]
    results = entry.run_batch(tasks) if tasks else []
    if track:
        tracking.trace_results(results, tasks, llm_tier=llm_tier)
    by_id = {r.id: (r, res) for r, res in zip(readable, results, strict=True)}
    records = []
    for request in batch:
        if request.id in by_id:
            records.append(record(*by_id[request.id], llm_tier, label_field))
        else:
            records.append({"id": request.id, "input": request.text, "output": None,
                            "error": request.error, "label": request.label})  # fmt: skip
    return records


def record(
    request: Request, result: Result, llm_tier: set[str], label_field: str | None = None
) -> dict[str, Any]:
    """One output line: the answer, the path, and what it cost."""
    agents = [s.agent for s in result.path if s.kind != "decision"]
    llm = any(a in llm_tier for a in agents)
    review = any(s.kind == "review" for s in result.path)
    out: dict[str, Any] = {
        "id": request.id,
        "input": request.text,
        "output": _jsonable(result.output),
        "confidence": None if result.confidence is None else round(result.confidence, 4),
        "error": result.error,
        "label": request.label,
        "agents": agents,
        "llm_tier": llm,
        "handled_by": "review" if review else "llm" if llm else "slm",
        "escalated": any(s.decision.startswith("escalate") for s in result.path),
        "latency_s": round(result.latency_s, 4),
        "tokens": result.tokens,
        "cost_usd": result.cost,
        "cost_by_agent": {a: u["cost"] for a, u in result.usage_by_agent().items() if u["cost"]},
        "trace_id": result.trace_id,
    }
    if request.label is not None and result.ok and not review:
        out["correct"] = str(answer_label(result.output, label_field)) == request.label
    if request.label is not None and result.ok and review and result.path:
        # what answering without review would have scored: the first agent's own answer
        guess = answer_label(result.path[0].output, label_field)
        out["guess_correct"] = str(guess) == request.label
    return out


def review_queue_of(output: Path) -> Path:
    """Where a job writing ``output`` queues the requests its review agents take."""
    return output.with_name(output.name + ".review.jsonl")


def answer_label(output: Any, field: str | None = None) -> Any:
    """What to compare with a label: a dict output's ``field`` (default: the first of ``label``,
    ``intent``, ``department``, ``answer`` it has), or the output itself."""
    if isinstance(output, dict):
        if field is not None:
            return output.get(field)
        for key in ("label", "intent", "department", "answer"):
            if key in output:
                return output[key]
    return output


def completed_ids(output: Path) -> set[str]:
    """Ids already written to ``output``; a half-written last line is cut off first."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # killed mid-write: drop the partial line
        with output.open("r+b") as f:
            f.truncate(end)
        data = data[:end]
    ids = set()
    for line in data.splitlines():
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            continue
    return ids


def summarise(
    output: Path,
    wanted: set[str],
    requests: int,
    processed_now: int,
    prices: PriceTable | None = None,
) -> JobSummary:
    """The summary over the records of ``output`` that belong to this input.

    ``llm_only_cost_usd`` prices each successful request as one call of the price table's
    ``llm`` with the request's words as input tokens and one output token: a lower bound (no
    instructions, no label list), so the saving it shows is never overstated.
    """
    prices = prices or DEFAULT_TABLE
    records = [r for r in _read_records(output) if r.get("id") in wanted]
    ok = [r for r in records if not r.get("error")]
    labelled = [r for r in ok if "correct" in r]
    guessed = [r["guess_correct"] for r in ok if "guess_correct" in r]
    latencies = sorted(r["latency_s"] for r in ok if "latency_s" in r)
    handled = [_handled_by(r) for r in ok]

    def share(count: int) -> float | None:
        return round(count / len(ok), 4) if ok else None

    return JobSummary(
        output=str(output),
        requests=requests,
        processed_now=processed_now,
        ok=len(ok),
        errors=len(records) - len(ok),
        labelled=len(labelled),
        accuracy=round(sum(r["correct"] for r in labelled) / len(labelled), 4)
        if labelled
        else None,
        automatic_share=share(sum(h != "review" for h in handled)),
        slm_share=share(handled.count("slm")),
        llm_share=share(handled.count("llm")),
        review_share=share(handled.count("review")),
        reviewed_guess_accuracy=round(sum(guessed) / len(guessed), 4) if guessed else None,
        escalated=sum(bool(r.get("escalated")) for r in ok),
        latency_p50_s=_quantile(latencies, 0.5),
        latency_p95_s=_quantile(latencies, 0.95),
        tokens=sum(r.get("tokens", 0) for r in ok),
        cost_usd=round(sum(r.get("cost_usd", 0.0) for r in ok), 8),
        llm_only_cost_usd=round(
            sum(prices.cost(HOSTED_LLM, len(str(r.get("input") or "").split()), 1) for r in ok), 8
        ),
        seconds=0.0,
    )


def _handled_by(record: dict[str, Any]) -> str:
    """``slm``, ``llm`` or ``review``; records written before ``handled_by`` existed say
    only whether the LLM tier ran."""
    if record.get("handled_by") in HANDLERS:
        return record["handled_by"]
    return "llm" if record.get("llm_tier") else "slm"


def _read_records(output: Path) -> Iterator[dict[str, Any]]:
    if not output.exists():
        return
    with output.open(encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 4)


def _append(sink: Any, records: list[dict[str, Any]]) -> None:
    sink.write("".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in records))
    sink.flush()
    os.fsync(sink.fileno())


def _chunks(items: list[Request], size: int) -> Iterator[list[Request]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # a pydantic model from the Extractor
        return value.model_dump()
    return value

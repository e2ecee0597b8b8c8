"""``slm-agents demo``: a tour of the embedded models on real data, one model at a time.

Routes real support tickets (BANKING77) to departments with the zero-shot encoder, drafts
replies with the 135M SLM, extracts a receipt (SROIE) as schema-valid JSON, and logs it all to
one MLflow run with a trace per model call. The main job, a team of agents over a file of
requests, is ``slm-agents run`` (what ``make demo`` runs).
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from slm_agents import tracking
from slm_agents.specialists.support_router import load_departments

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Receipt(BaseModel):
    """The four SROIE fields; length caps keep a small model from rambling inside a string."""

    company: str = Field(max_length=80)
    date: str = Field(max_length=20)
    address: str = Field(max_length=160)
    total: str = Field(max_length=12)


@dataclass
class DemoResult:
    run_id: str | None
    tickets: int
    routing_accuracy: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    receipt: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def receipt_text(record: dict[str, Any]) -> str:
    return "\n".join(line["text"] for line in record["lines"])


def run_demo(
    tickets: Path = EXAMPLES / "data" / "support_tickets.csv",
    receipts: Path = EXAMPLES / "data" / "receipts.jsonl",
    departments: Path = EXAMPLES / "banking77_departments.yaml",
    n_tickets: int = 40,
    n_replies: int = 3,
    max_new_tokens: int = 48,
    progress: bool = True,
) -> DemoResult:
    from slm_agents.models import CausalLM, EncoderClassifier

    descriptions, intent_to_dept = load_departments(departments)
    with open(tickets, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n_tickets]
    record = json.loads(Path(receipts).read_text(encoding="utf-8").splitlines()[0])
    params = {"n_tickets": len(rows), "max_new_tokens": max_new_tokens, "tickets": str(tickets)}

    with tracking.run("demo", params=params) as run_id:
        router = EncoderClassifier(labels=descriptions)
        slm = CausalLM()
        tracking.log_params({"router": router.describe(), "slm": slm.describe()})

        predictions = router.predict([r["text"] for r in rows], progress=progress)
        table = []
        for row, pred in zip(rows, predictions, strict=True):
            expected = intent_to_dept.get(row["category"])
            table.append(
                {
                    "text": row["text"],
                    "expected": expected,
                    "predicted": pred.label,
                    "confidence": pred.confidence,
                    "correct": pred.label == expected,
                }
            )
        accuracy = sum(r["correct"] for r in table) / max(len(table), 1)

        prompts = [
            "You are a bank's support agent. Reply to this customer in one or two sentences.\n\n"
            f"Customer: {r['text']}"
            for r in rows[:n_replies]
        ]
        replies = slm.generate(prompts, max_new_tokens=max_new_tokens, progress=progress)

        extraction = slm.generate(
            [
                "Extract the company, date, address and total from this receipt.\n\n"
                + receipt_text(record)
            ],
            json_schema=Receipt,
            max_new_tokens=160,
        )[0]
        extracted = extraction.parsed.model_dump() if extraction.parsed is not None else {}
        gold = record["fields"]
        matched = sum(_norm(extracted.get(k, "")) == _norm(gold[k]) for k in gold)

        metrics = {
            "routing_accuracy": accuracy,
            "routing_confidence_median": statistics.median(r["confidence"] for r in table),
            "reply_tokens_per_s": sum(g.usage.completion_tokens for g in replies)
            / max(max(g.latency_s for g in replies), 1e-9),
            "reply_confidence_median": statistics.median(g.confidence for g in replies),
            "receipt_fields_exact": matched / len(gold),
            "receipt_json_valid": float(extraction.ok),
        }
        tracking.log_metrics(metrics)

    return DemoResult(
        run_id=run_id,
        tickets=len(table),
        routing_accuracy=accuracy,
        rows=table,
        replies=[
            {"ticket": r["text"], "reply": g.text, "confidence": g.confidence, "error": g.error}
            for r, g in zip(rows, replies, strict=False)
        ],
        receipt={
            "id": record["id"],
            "extracted": extracted,
            "gold": gold,
            "error": extraction.error,
        },
        metrics=metrics,
    )


def _norm(value: str) -> str:
    """Exact match up to case and runs of whitespace."""
    return " ".join(str(value).split()).casefold()

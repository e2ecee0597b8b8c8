"""Receipts as the extractor sees them: the fields, their schema and the prompt.

One definition for training and inference alike: ``slm_agents.finetune.recipes`` trains on
prompts built by :func:`receipt_prompt` and answers constrained by :data:`RECEIPT_SCHEMA`, and
the :class:`~slm_agents.specialists.extractor.Extractor` builds the same prompt for an adapter
that records its instruction, so inference matches training token for token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIELDS = ("company", "date", "address", "total")
INSTRUCTION = "Extract the company, date, address and total from this receipt as JSON."
# Bounded strings: a 135M model under an unbounded schema can loop until max_new_tokens
# (SROIE's longest values: company 49, date 12, address 118, total 8 characters).
RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "company": {"type": "string", "maxLength": 100},
        "date": {"type": "string", "maxLength": 30},
        "address": {"type": "string", "maxLength": 200},
        "total": {"type": "string", "maxLength": 20},
    },
    "required": list(FIELDS),
    "additionalProperties": False,
}


@dataclass
class Receipt:
    id: str
    lines: list[str]  # OCR lines, non-empty
    fields: dict[str, str]  # the labels; empty when extracting

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def receipt_prompt(receipt: Receipt, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    """The chat prompt for one receipt: used for training and for extraction alike."""
    return [{"role": "user", "content": f"{instruction}\n\n{receipt.text}"}]

"""What a call costs: a price per million input and output tokens, per model.

Defaults are assumptions to make trade-offs visible, not quotes. Local SLMs are priced at a
rough self-hosting cost on CPU; ``llm`` stands for a hosted general model in the class of
small commercial APIs. Override with ``PriceTable({...})`` or a team spec's ``prices:`` block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        if self.input_per_million < 0 or self.output_per_million < 0:
            raise ValueError(f"prices must be >= 0, got {self}")


HOSTED_LLM = "llm"  # the price table's name for a hosted general model (the LLM tier)
# USD per million tokens. Documented in docs/architecture.md ("Cost").
DEFAULT_PRICES: dict[str, Price] = {
    "all-minilm-l6-v2": Price(0.005, 0.0),
    "smollm2-135m-instruct": Price(0.02, 0.04),
    "gemma-3-270m": Price(0.04, 0.08),
    HOSTED_LLM: Price(0.15, 0.60),
}
FALLBACK = Price(0.15, 0.60)  # an unknown model is priced like the LLM tier: never free by accident


class PriceTable:
    def __init__(self, prices: Mapping[str, Price | Mapping[str, float]] | None = None):
        self.prices = dict(DEFAULT_PRICES)
        for model, price in (prices or {}).items():
            self.prices[model] = price if isinstance(price, Price) else Price(**price)

    def price(self, model: str | None) -> Price:
        return self.prices.get(model or "", FALLBACK)

    def cost(self, model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
        p = self.price(model)
        return (
            prompt_tokens * p.input_per_million + completion_tokens * p.output_per_million
        ) / 1e6


DEFAULT_TABLE = PriceTable()

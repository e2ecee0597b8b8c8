"""Typed placeholders for one request's personal data, and putting the values back.

A vault lives as long as one request: each distinct value of a kind gets the next placeholder
of that kind (``<EMAIL_1>``, ``<PERSON_2>``), the same value always the same one, so a model
can still tell two people apart. The mapping stays in memory; only the placeholders leave.
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"<([A-Z]+)_(\d+)>")


class Vault:
    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            n = sum(1 for k, _ in self._by_value if k == kind) + 1
            self._by_value[key] = f"<{kind}_{n}>"
            self._values[self._by_value[key]] = value
        return self._by_value[key]

    def restore(self, value: Any) -> Any:
        """``value`` with every known placeholder replaced by its value: in a string, or in the
        strings of a JSON-like structure (dict keys too). Unknown placeholders stay."""
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: self._values.get(m.group(), m.group()), value)
        if isinstance(value, dict):
            return {self.restore(k): self.restore(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.restore(v) for v in value)
        return value

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # never the values
        return f"Vault({len(self)} values)"

"""A text generator that sees only redacted text: the guard in front of an external tier.

``RedactingGenerator(endpoint, redactor)`` is itself a TextGenerator. For each prompt it makes
a fresh :class:`~slm_agents.privacy.vault.Vault`, sends the prompt with personal data replaced
by placeholders (every message but the system prompt, which is the team's own text), and puts
the values back into the reply (``text`` and ``parsed``), so the agent and the user see real
values and the external model never did. ``Generation.redaction`` says what was replaced
(kinds and counts, never values); agents turn it into a ``redact`` Step on the Result's path.

The vault lives for one prompt: two calls about one request number their placeholders each
from 1. A JSON schema is checked on the reply as sent, before the values come back, so a
``pattern`` or ``format`` constraint on a redacted field can reject a placeholder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slm_agents.privacy.redactor import Redactor
from slm_agents.privacy.vault import Vault


class RedactingGenerator:
    def __init__(self, inner: Any, redactor: Redactor):
        self.inner, self.redactor = inner, redactor
        self.name = inner.name

    def generate(self, prompts: Sequence[Any], **options: Any) -> list[Any]:
        vaults = [Vault() for _ in prompts]
        sent, reports = [], []
        for prompt, vault in zip(prompts, vaults, strict=True):
            text, report = self._redacted(prompt, vault)
            sent.append(text)
            reports.append(report)
        gens = self.inner.generate(sent, **options)
        for gen, vault, report in zip(gens, vaults, reports, strict=True):
            gen.text = vault.restore(gen.text)
            gen.parsed = vault.restore(gen.parsed)
            gen.redaction = report
        return gens

    def _redacted(self, prompt: Any, vault: Vault) -> tuple[Any, dict[str, Any]]:
        counts: dict[str, int] = {}
        seconds = 0.0

        def redact(text: str) -> str:
            nonlocal seconds
            done = self.redactor.redact(text, vault)
            seconds += done.seconds
            for kind, n in done.counts.items():
                counts[kind] = counts.get(kind, 0) + n
            return done.text

        if isinstance(prompt, str):
            out: Any = redact(prompt)
        else:
            out = [
                m if m.get("role") == "system" or not isinstance(m.get("content"), str)
                else {**m, "content": redact(m["content"])}
                for m in prompt
            ]  # fmt: skip
        return out, {"counts": counts, "seconds": round(seconds, 6)}

    def __getattr__(self, name: str) -> Any:  # describe(), adapters, ...: the inner model's
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"RedactingGenerator({self.inner!r}, kinds={list(self.redactor.kinds)})"

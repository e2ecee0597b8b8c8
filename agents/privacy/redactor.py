"""Redaction: personal data in a text becomes typed placeholders (Presidio's anonymizer)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from slm_agents.privacy.detector import Detector
from slm_agents.privacy.kinds import ENTITY_OF
from slm_agents.privacy.vault import Vault


@dataclass
class Redaction:
    """What one redaction did: the text with placeholders, and counts per kind (no values)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Redactor:
    """``redact(text, vault)``: the text with each entity of ``kinds`` replaced by the vault's
    placeholder for it. One Redactor serves many requests (and threads); a Vault, one.
    ``allow``: names never taken for a person (product names)."""

    def __init__(
        self, kinds: tuple[str, ...] | list[str] | None = None, allow: list[str] | None = None
    ):
        self.detector = Detector(kinds, allow)
        self.kinds = self.detector.kinds
        self._anonymizer: Any = None

    def redact(self, text: str, vault: Vault | None = None) -> Redaction:
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        started = time.perf_counter()
        vault = vault if vault is not None else Vault()
        entities = self.detector.detect(text)
        if not entities:
            return Redaction(text, {}, time.perf_counter() - started)
        if self._anonymizer is None:
            self._anonymizer = AnonymizerEngine()
        for e in entities:  # numbered in reading order (the anonymizer works from the end)
            vault.placeholder(e.kind, text[e.start : e.end])
        operators = {
            ENTITY_OF[kind]: OperatorConfig(
                "custom", {"lambda": lambda value, kind=kind: vault.placeholder(kind, value)}
            )
            for kind in {e.kind for e in entities}
        }
        results = [RecognizerResult(ENTITY_OF[e.kind], e.start, e.end, e.score) for e in entities]
        out = self._anonymizer.anonymize(text, results, operators=operators).text
        counts: dict[str, int] = {}
        for e in entities:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        return Redaction(out, counts, time.perf_counter() - started)

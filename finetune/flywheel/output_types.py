"""What kind of answer a task's logged LLM outputs are: labels, fixed-shape JSON or free text.

The kind decides which small model can take the task over (an encoder classifier for labels, a
causal LM with a JSON schema for extraction, a causal LM for free text), so the rules are strict
and each verdict says which numbers it rests on:

- **extraction**: at least :data:`EXTRACTION_SHARE` of the outputs are JSON objects (a ``dict``,
  or a string that parses as a JSON object) with one and the same set of keys.
- **classification**: every output is a string; at least :data:`SHORT_SHARE` of them are short
  (one line, at most :data:`SHORT_CHARS` characters); and the answers repeat: at least
  :data:`REPEAT_SHARE` of the calls give an answer that some other call also gave. This is
  Good-Turing's coverage (one minus the share of answers seen once): it estimates how much of the
  traffic a closed label set covers. Short open answers ("Paris", "42") are nearly all distinct
  and stay generation. With many labels and few calls (77 intents over 30 calls) most labels are
  seen once, and the calls cannot tell labels from free text yet: they come out generation.
- **generation**: anything else.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["classification", "extraction", "generation"]

EXTRACTION_SHARE = 0.8  # share of outputs that must be JSON objects with the modal key set
SHORT_CHARS = 64  # a label is at most this long (BANKING77's longest intent: 48)
SHORT_SHARE = 0.95  # share of outputs that must be short for a label set
REPEAT_SHARE = 0.5  # share of calls whose answer another call also gave (coverage)


@dataclass(frozen=True)
class OutputType:
    """The verdict: ``kind``, the reason in numbers, and the labels or keys it found."""

    kind: Kind
    reason: str
    n: int
    labels: tuple[str, ...] = ()  # classification: the distinct answers, sorted
    keys: tuple[str, ...] = ()  # extraction: the shared keys, sorted

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["keys"] = list(self.keys)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputType:
        return cls(**{**data, "labels": tuple(data["labels"]), "keys": tuple(data["keys"])})


def detect_output_type(outputs: list[str | dict]) -> OutputType:
    """Classify a task's outputs as classification, extraction or generation (module doc)."""
    if isinstance(outputs, str | dict):
        raise TypeError("detect_output_type takes a list of outputs; wrap a single one in [ ]")
    outputs = list(outputs)
    if not outputs:
        raise ValueError("detect_output_type needs at least one output, got an empty list")
    parsed = [_parse(i, output) for i, output in enumerate(outputs)]
    n = len(parsed)

    objects = [value for value in parsed if isinstance(value, dict)]
    if objects:
        key_sets = Counter(frozenset(value) for value in objects)
        keys, count = key_sets.most_common(1)[0]
        if count >= EXTRACTION_SHARE * n:
            return OutputType(
                "extraction",
                f"{count} of {n} outputs are JSON objects with the keys {sorted(keys)} "
                f"(at least {EXTRACTION_SHARE:.0%} needed)",
                n,
                keys=tuple(sorted(keys)),
            )
        return OutputType(
            "generation",
            f"{len(objects)} of {n} outputs are JSON objects, but only {count} share one key set "
            f"({sorted(keys)}; {EXTRACTION_SHARE:.0%} needed for extraction) and the rest are "
            "text",
            n,
        )

    texts = [value.strip() for value in parsed]
    short = sum(1 for text in texts if len(text) <= SHORT_CHARS and "\n" not in text)
    counts = Counter(texts)
    seen_once = sum(1 for c in counts.values() if c == 1)
    coverage = 1.0 - seen_once / n
    median_chars = statistics.median(len(text) for text in texts)
    if short >= SHORT_SHARE * n and coverage >= REPEAT_SHARE:
        return OutputType(
            "classification",
            f"{len(counts)} distinct short answers over {n} calls; {coverage:.0%} of calls repeat "
            f"an answer another call gave (at least {REPEAT_SHARE:.0%} needed)",
            n,
            labels=tuple(sorted(counts)),
        )
    why = (
        f"only {short} of {n} are short (one line, <= {SHORT_CHARS} characters; "
        f"{SHORT_SHARE:.0%} needed for labels)"
        if short < SHORT_SHARE * n
        else f"only {coverage:.0%} of calls repeat an answer another call gave "
        f"({REPEAT_SHARE:.0%} needed for labels)"
    )
    return OutputType(
        "generation",
        f"free text: {len(counts)} distinct answers over {n} calls, median "
        f"{median_chars:.0f} characters; {why}",
        n,
    )


def _parse(index: int, output: Any) -> str | dict:
    """A dict, or a string that parses as a JSON object, is an object; other strings are text."""
    if isinstance(output, dict):
        return output
    if isinstance(output, bool):  # before int: bool is an int
        return "true" if output else "false"
    if isinstance(output, int | float):
        return str(output)
    if output is None:
        raise ValueError(f"output {index} is missing (None); drop calls without outputs first")
    if not isinstance(output, str):
        raise TypeError(
            f"output {index} is a {type(output).__name__}; outputs are strings or JSON objects"
        )
    stripped = output.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return output
        if isinstance(value, dict):
            return value
    return output

"""S2 Curate: the calls worth learning from, free of personal data, split by time.

In this order, each step counted:

1. **failed** calls (an ``error``) and **invalid** ones (an empty input, or no answer: ``None``,
   an empty string, an empty JSON object) are dropped;
2. personal data still in a call (a log from elsewhere, or a store that kept raw text) is
   **redacted** with :class:`slm_agents.privacy.Redactor`: the input, a string answer, the
   string values of a JSON answer and a chat log's system prompt, one vault per call (so the
   same person is the same placeholder in the question and the answer), numbered after the
   placeholders the call already holds. Only the redacted text is kept;
3. **near-duplicates** are dropped: a call whose input's embedding (the bundled encoder) has a
   cosine of ``dedup_threshold`` or more with an earlier kept call's; the earliest is kept, so a
   held-out call never repeats a training call;
4. the rest is **split by time**: the latest calls are held out, whole conversations at a time
   (a conversation goes where its latest call falls), never random rows of one conversation.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from slm_agents.finetune.flywheel.calls import Call
from slm_agents.privacy.vault import PLACEHOLDER

BLOCK = 1024  # rows of the similarity matrix computed at once


class CurateError(ValueError):
    """Curation cannot go on: bad settings, calls it cannot order by time, or nothing left."""


@dataclass
class Curated:
    train: list[Call]
    heldout: list[Call]  # the latest calls, whole conversations
    dropped: dict[str, int]  # why calls were dropped: failed, invalid, near_duplicate
    redacted_calls: int = 0  # calls that still held personal data
    redacted_values: dict[str, int] = field(default_factory=dict)  # values replaced, per kind
    # call id -> its input's embedding, when near-duplicates were checked (clustering reuses it)
    vectors: dict[str, Any] = field(default_factory=dict, repr=False)

    def counts(self) -> dict[str, int]:
        """Every count in one flat dict (for a table, a JSON report or MLflow metrics)."""
        return {
            "calls": len(self.train) + len(self.heldout) + sum(self.dropped.values()),
            **{f"dropped_{why}": n for why, n in self.dropped.items()},
            "redacted_calls": self.redacted_calls,
            "redacted_values": sum(self.redacted_values.values()),
            "train": len(self.train),
            "heldout": len(self.heldout),
        }


def curate(
    calls: list[Call],
    *,
    dedup_threshold: float | None = 0.95,
    holdout_fraction: float = 0.2,
    redactor: Any = None,
    embedding_model: str | None = None,
) -> Curated:
    """Curate ``calls`` (see the module docstring); ``dedup_threshold=None`` keeps
    near-duplicates, ``redactor`` defaults to a :class:`~slm_agents.privacy.Redactor` of every
    kind. A :class:`CurateError` when no call is left."""
    if dedup_threshold is not None and not 0.0 < dedup_threshold <= 1.0:
        raise CurateError(f"dedup_threshold must be in (0, 1], got {dedup_threshold}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise CurateError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    ordered = in_time_order(calls)
    dropped = {"failed": 0, "invalid": 0, "near_duplicate": 0}
    usable = []
    for call in ordered:
        if not call.ok:
            dropped["failed"] += 1
        elif not call.input.strip() or _empty(call.output):
            dropped["invalid"] += 1
        else:
            usable.append(call)
    redactor = redactor if redactor is not None else _default_redactor()
    kinds: Counter[str] = Counter()
    redacted_calls = 0
    clean = []
    for call in usable:
        done, found = redact_call(call, redactor)
        clean.append(done)
        redacted_calls += bool(found)
        kinds.update(found)
    vectors: dict[str, Any] = {}
    if dedup_threshold is not None and clean:
        texts = [c.input for c in clean]
        found = _embeddings(texts, embedding_model)
        keep = first_of_near_duplicates(texts, dedup_threshold, vectors=found)
        dropped["near_duplicate"] = len(clean) - len(keep)
        clean = [clean[i] for i in keep]
        vectors = {c.id: found[i] for c, i in zip(clean, keep, strict=True)}
    if not clean:
        raise CurateError(
            f"no call is left to learn from out of {len(calls)}: {dropped['failed']} failed, "
            f"{dropped['invalid']} without an input or an answer, "
            f"{dropped['near_duplicate']} near-duplicates"
        )
    train, heldout = split_by_time(clean, holdout_fraction)
    return Curated(train, heldout, dropped, redacted_calls, dict(kinds), vectors)


# ---------------------------------------------------------------- time
def in_time_order(calls: list[Call]) -> list[Call]:
    """``calls`` oldest first. Without any timestamps, the log's order is the time order; a log
    where only some calls have one cannot be ordered (a :class:`CurateError` says how many)."""
    timed = sum(c.timestamp is not None for c in calls)
    if timed == 0:
        return list(calls)
    if timed < len(calls):
        raise CurateError(
            f"{len(calls) - timed} of {len(calls)} calls have no timestamp, so they cannot be "
            "split by time: give every call one, or none (then the log's order is the time order)"
        )
    return sorted(calls, key=lambda c: c.timestamp)  # stable: ties keep the log's order


def split_by_time(calls: list[Call], holdout_fraction: float) -> tuple[list[Call], list[Call]]:
    """(train, held out) from ``calls`` in time order: the conversations whose latest call is
    the latest are held out until they hold ``holdout_fraction`` of the calls. A call without a
    conversation id is a conversation of its own."""
    last_seen: dict[str, int] = {}
    for position, call in enumerate(calls):
        last_seen[_conversation(call)] = position
    target = round(holdout_fraction * len(calls))
    held: set[str] = set()
    size = Counter(_conversation(c) for c in calls)
    count = 0
    for conversation in sorted(last_seen, key=last_seen.__getitem__, reverse=True):
        if count >= target:
            break
        held.add(conversation)
        count += size[conversation]
    train = [c for c in calls if _conversation(c) not in held]
    heldout = [c for c in calls if _conversation(c) in held]
    return train, heldout


def _conversation(call: Call) -> str:
    return f"c:{call.conversation_id}" if call.conversation_id is not None else f"id:{call.id}"


# ---------------------------------------------------------------- validity
def _empty(output: Any) -> bool:
    if output is None:
        return True
    if isinstance(output, str):
        return not output.strip()
    return isinstance(output, dict | list) and not output


# ---------------------------------------------------------------- redaction
@functools.lru_cache(maxsize=1)
def _default_redactor() -> Any:
    from slm_agents.privacy import Redactor

    return Redactor()


def redact_call(call: Call, redactor: Any) -> tuple[Call, Counter[str]]:
    """``call`` with the personal data in its texts replaced, and the values replaced per kind.

    One vault for the call, started after the highest placeholder number of each kind the call
    already holds, so a new find never takes the number of an earlier redaction's value.
    """
    from slm_agents.privacy import Vault

    system = call.meta.get("system")
    texts = [call.input, *_strings(call.output), *([system] if isinstance(system, str) else [])]
    vault = Vault()
    highest: dict[str, int] = {}
    for text in texts:
        for kind, number in PLACEHOLDER.findall(text):
            highest[kind] = max(highest.get(kind, 0), int(number))
    for kind, number in highest.items():
        for n in range(1, number + 1):  # taken by an earlier redaction: never handed out again
            vault.placeholder(kind, f"\0taken {n}")
    found: Counter[str] = Counter()

    def redact(text: str) -> str:
        if not text.strip() or _only_placeholders(text):
            return text
        done = redactor.redact(text, vault)
        found.update(done.counts)
        return done.text

    meta = {**call.meta, "system": redact(system)} if isinstance(system, str) else call.meta
    cleaned = replace(call, input=redact(call.input), output=_map_strings(call.output, redact),
                      meta=meta)  # fmt: skip
    return cleaned, found


def _only_placeholders(text: str) -> bool:
    return not re.sub(r"[\W_]+", "", PLACEHOLDER.sub("", text))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _map_strings(value: Any, fn: Any) -> Any:
    """``value`` with ``fn`` applied to every string in it (JSON keys stay: they are field
    names of the answer's shape, not data)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, fn) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, fn) for item in value]
    return value


# ---------------------------------------------------------------- near-duplicates
def _embeddings(texts: list[str], model: str | None) -> Any:
    """The texts' embeddings with ``model``, or the bundled encoder when it is None."""
    from slm_agents.finetune.flywheel.embed import embed_texts

    return embed_texts(texts) if model is None else embed_texts(texts, model=model)


def first_of_near_duplicates(
    texts: list[str], threshold: float, model: str | None = None, *, vectors: Any = None
) -> list[int]:
    """Positions of the texts to keep: each text whose embedding has a cosine of ``threshold``
    or more with an earlier kept text's is dropped (greedy, in the given order). ``vectors``:
    the texts' embeddings when the caller has them."""
    import numpy

    if vectors is None:
        vectors = _embeddings(texts, model)
    earlier: list[list[int]] = [[] for _ in texts]  # for each text, the earlier ones it repeats
    for start in range(0, len(texts), BLOCK):
        block = vectors[start : start + BLOCK] @ vectors[: start + BLOCK].T
        rows, cols = numpy.nonzero(block >= threshold - 1e-6)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if col < start + row:
                earlier[start + row].append(col)
    kept: set[int] = set()
    for i in range(len(texts)):
        if not any(j in kept for j in earlier[i]):
            kept.add(i)
    return sorted(kept)

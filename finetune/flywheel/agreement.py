"""How far one SLM answer agrees with the LLM's logged answer to the same call, in [0, 1].

The LLM's answer is the reference: the flywheel has no other labels. One measure per output
type (:mod:`slm_agents.finetune.flywheel.output_types`):

- **classification**: the labels are equal after ``strip`` and ``casefold`` (1 or 0);
- **extraction**: the share of the LLM answer's fields the SLM answered equally, values
  compared after :func:`slm_agents.finetune.extraction_eval.normalise` (casefolded, whitespace
  dropped: the receipt extractor's exact match); an answer that is not a JSON object scores 0;
- **generation**: :func:`text_similarity`, a word-level edit similarity.

Either answer may be JSON text (an endpoint that returned a JSON string): it is parsed.
Garbage never raises: an answer of the wrong shape (None, a number where a label was due,
text that is no JSON object) scores 0.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from slm_agents.finetune.extraction_eval import normalise

KINDS = ("classification", "extraction", "generation")


def agreement(kind: str, slm_output: Any, llm_output: Any) -> float:
    """One call's agreement of ``slm_output`` with ``llm_output`` for a task of ``kind``."""
    if kind == "classification":
        slm, llm = _label(slm_output), _label(llm_output)
        return 1.0 if slm is not None and slm == llm else 0.0
    if kind == "extraction":
        return _field_agreement(_object(slm_output), _object(llm_output))
    if kind == "generation":
        slm, llm = _text(slm_output), _text(llm_output)
        return 0.0 if slm is None or llm is None else text_similarity(slm, llm)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def text_similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher``'s ratio over the whitespace-separated tokens of both texts.

    Why this measure: it is word-level (a changed word costs one word, not its letters, and
    reflowed whitespace costs nothing), order-aware (the same words shuffled score low, unlike
    bag-of-words overlap), needs no model (no embedding to load, nothing to drift between
    runs), and is 1.0 exactly when the token sequences are equal. It rewards surface overlap,
    not meaning: a correct answer worded differently scores low, so for free text it is a
    conservative stand-in for "the LLM would have said the same". ``autojunk`` is off: on long
    texts (code) it would ignore frequent tokens such as ``return`` and ``=``.
    """
    left, right = a.split(), b.split()
    if not left and not right:
        return 1.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


def _label(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value).casefold()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip().casefold()
    return None


def _object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _field_agreement(slm: dict[str, Any] | None, llm: dict[str, Any] | None) -> float:
    if slm is None or llm is None:
        return 0.0
    if not llm:  # nothing to agree on: only an empty object agrees with an empty object
        return 1.0 if not slm else 0.0
    same = sum(
        1 for key, value in llm.items() if key in slm and normalise(slm[key]) == normalise(value)
    )
    return same / len(llm)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):  # a free-text task answered with JSON: compare its text
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return None
    return None

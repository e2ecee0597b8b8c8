"""What the tracking store writes instead of raw text, and what error messages quote.

One process-wide redactor of every kind, and a cache, because a request's text reaches the
store several times (the trace's input, each step, the output). Each stored string gets its
own placeholder numbering: the store keeps no mapping, so nothing can be restored from it.
"""

from __future__ import annotations

from functools import lru_cache

from slm_agents.privacy.redactor import Redactor


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    return Redactor()


@lru_cache(maxsize=4096)
def store_text(text: str) -> str:
    """``text`` as the tracking store may keep it."""
    return _redactor().redact(text).text if text.strip() else text


def excerpt(text: str, limit: int = 200) -> str:
    """A short redacted excerpt of ``text`` for an error message (``repr``-quoted)."""
    return repr(store_text(text[:limit]))

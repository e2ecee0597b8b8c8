"""Specialist agents: each a small Agent subclass that does one narrow job well.

- :class:`SupportRouter` (``support_router.py``): a ticket to an intent and a department, with a
  calibrated confidence; low-confidence or out-of-scope tickets escalate.
- :class:`Extractor` (``extractor.py``): text to a pydantic model or JSON schema, always valid
  (constrained decoding), with per-field confidence and normalisation hooks.
- :class:`Coder` (``coder.py``): writes a function, runs its tests in the sandbox, repairs from
  the error output.
- :class:`Planner` (``planner.py``): the LLM tier; decomposes a request into a JSON plan of
  specialist calls.

Names are imported lazily so ``import slm_agents.specialists`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "SupportRouter": "support_router",
    "Extractor": "extractor",
    "Coder": "coder",
    "Planner": "planner",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'slm_agents.specialists' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)

"""JSON-schema and regex constrained decoding through xgrammar.

xgrammar masks, at every step, the tokens that would break the grammar, so even a 135M model
can only emit text the schema accepts. Grammars are compiled once per schema and cached.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from slm_agents.models.base import InputError


@dataclass(frozen=True)
class Constraint:
    """A validated request for structured output: exactly one of schema or regex."""

    json_schema: str | None = None  # canonical JSON text of the schema
    regex: str | None = None
    pydantic_model: Any = None  # parse into this class when the schema came from one

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.json_schema, self.regex)


def make_constraint(json_schema: Any = None, regex: str | None = None) -> Constraint | None:
    """Normalise what a user passed (dict, JSON text, pydantic class) into a Constraint."""
    if json_schema is None and regex is None:
        return None
    if json_schema is not None and regex is not None:
        raise InputError("pass json_schema or regex, not both")
    if regex is not None:
        if not isinstance(regex, str) or not regex:
            raise InputError(f"regex must be a non-empty string, got {regex!r}")
        return Constraint(regex=regex)
    model_cls = None
    if isinstance(json_schema, type) and hasattr(json_schema, "model_json_schema"):
        model_cls, json_schema = json_schema, json_schema.model_json_schema()
    if isinstance(json_schema, str):
        try:
            json_schema = json.loads(json_schema)
        except json.JSONDecodeError as exc:
            raise InputError(f"json_schema is not valid JSON: {exc}") from exc
    if not isinstance(json_schema, dict):
        raise InputError(
            f"json_schema must be a dict, JSON text or pydantic model, got {type(json_schema)}"
        )
    # Keep the user's property order: xgrammar emits properties in schema order.
    return Constraint(json_schema=json.dumps(json_schema), pydantic_model=model_cls)


class GrammarCompiler:
    """Compiles constraints for one tokenizer; xgrammar caches compiled grammars itself."""

    def __init__(self, tokenizer: Any, vocab_size: int):
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info)

    def compile(self, constraint: Constraint) -> Any:
        try:
            if constraint.regex is not None:
                return self._compiler.compile_regex(constraint.regex)
            # Compact JSON: no free whitespace, so a small model cannot pad output forever.
            return self._compiler.compile_json_schema(constraint.json_schema, any_whitespace=False)
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError with a clear text
            what = "regex" if constraint.regex is not None else "JSON schema"
            reason = str(exc).strip().splitlines()[0]
            reason = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", reason)  # drop C++ time and source
            raise InputError(f"invalid {what}: {reason}") from exc

    @staticmethod
    def logits_processor(grammars: list[Any]) -> Any:
        """A fresh processor for one ``generate`` call (xgrammar's are single-use)."""
        import xgrammar as xgr

        return xgr.contrib.hf.LogitsProcessor(grammars)


def parse_output(text: str, constraint: Constraint) -> Any:
    """Decode the constrained text: a dict (or pydantic object) for schemas, the text for regex."""
    if constraint.regex is not None:
        return text
    value = json.loads(text)
    if constraint.pydantic_model is not None:
        return constraint.pydantic_model.model_validate(value)
    return value

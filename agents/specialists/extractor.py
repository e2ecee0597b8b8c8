"""Extractor: text (a receipt, an invoice, a form) to a pydantic model or JSON schema.

Why a specialist rather than an ``LLMAgent`` with a schema: extraction needs more than valid
JSON. A reviewer wants to know *which field* the model was unsure of, values in one canonical
form (``2018-12-25``, ``14.10``), and a fine-tuned adapter used with the prompt it was trained
on. So the Extractor

- decodes under the schema (xgrammar, through ``CausalLM.generate``): every answer that
  finishes is valid JSON of the schema; one cut off by ``max_new_tokens`` is an error Result
  that says so, never a half object;
- scores each top-level field from the token log-probabilities of its value: the geometric
  mean of the probabilities of the tokens that spell it (its closing quote included, the
  opening quote and the key excluded), the same formula as ``Generation.confidence``. The
  Result's confidence is the **minimum** over fields: a record is only as good as its weakest
  field, and a cascade should escalate when any field is doubtful, which a mean would hide
  behind the easy fields;
- applies opt-in normalisation hooks after parsing (:func:`normalise_date`,
  :func:`normalise_amount`, or any callable). A hook that raises, or whose value the schema
  rejects, leaves that field raw and adds a warning to ``meta["warnings"]``; it never fails
  the batch;
- loads a LoRA adapter directory from ``slm-agents finetune extractor`` and, when its
  ``sft.json`` records the ``instruction`` it was trained with, builds the prompt the training
  recipe uses (``slm_agents.specialists.receipts.receipt_prompt``), so inference matches
  training token for token. Without an explicit schema, the adapter's recorded schema is used.

Output: an instance of the pydantic class, or a dict for a JSON-schema dict. ``meta`` gets
``field_confidence`` (field -> [0, 1], or None from a backend that gives no confidence),
``warnings`` (list of str) and ``raw_output`` (the
parsed dict before hooks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_agents.agent import (
    Agent,
    call_options,
    fill_prompt,
    llm_step,
    merge,
    prompts_for,
    redaction_steps,
)
from slm_agents.models.base import AdapterHost, Generation, Messages, TextGenerator, TokenAligned
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.privacy import excerpt
from slm_agents.result import Result, Task, now, weakest
from slm_agents.specialists.normalise import HOOKS, normalise_amount, normalise_date

DEFAULT_PROMPT = "Extract the {fields} from this text as JSON.\n\n{text}"


# --------------------------------------------------------------------------- field confidence
def value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character spans of each top-level value of a JSON object text: key -> (start, end).

    A string's span starts after its opening quote (a forced token) and keeps its closing one
    (the decision to stop). Raises ``ValueError`` when ``text`` is not one JSON object.
    """
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\n\r":
            i += 1
        return i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        return spans
    while True:
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError(f"expected ':' at {i}")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        spans[key] = (start + 1 if text[start] == '"' else start, end)
        i = skip(end)
        if text[i : i + 1] == "}":
            return spans
        if text[i : i + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {i}")
        i = skip(i + 1)


def field_confidences(
    text: str, logprobs: Sequence[float], ends: Sequence[int]
) -> dict[str, float]:
    """Per top-level field: exp(mean logprob) of the tokens that overlap its value's span."""
    confidences = {}
    for key, (start, end) in value_spans(text).items():
        chosen = []
        for k, lp in enumerate(logprobs):
            t_start = ends[k - 1] if k else 0
            # A token that added no character (half of a UTF-8 sequence) still covers one.
            t_end = max(ends[k], t_start + 1)
            if t_start < end and t_end > start and math.isfinite(lp):
                chosen.append(lp)
        confidences[key] = math.exp(sum(chosen) / len(chosen)) if chosen else 1.0
    return confidences


# ---------------------------------------------------------------------------------- the agent
class Extractor(Agent):
    """Schema-valid extraction with per-field confidence, normalisation hooks and an adapter.

    Args:
        schema: a pydantic model class (the output is an instance) or a JSON-schema dict for an
            object (the output is a dict). Bound strings with ``maxLength`` so a small model
            cannot run on until ``max_new_tokens``. Optional when ``adapter`` records one.
        model: a ``CausalLM`` or any other ``TextGenerator`` (it must honour ``json_schema``),
            a model name/path (loaded here as a ``CausalLM``), or None: the adapter's base
            model, else the bundled default SLM. Per-field confidence needs a backend that ties
            tokens to text (``TokenAligned``); with another, every field gets the generation's
            confidence. An adapter needs one that loads adapters (``AdapterHost``).
        adapter: a LoRA adapter directory from ``slm-agents finetune extractor`` (loaded onto
            the model under ``name`` unless an adapter of that name is already loaded), or the
            name of an adapter already loaded on ``model``.
        prompt: ``str.format`` template over ``{text}``, ``{fields}`` ("a, b and c") and the
            task's ``meta``. Default :data:`DEFAULT_PROMPT`, or, for an adapter that records
            its ``instruction``, the recipe's own prompt (an explicit ``prompt`` wins).
        hooks: top-level field -> callable, or the name of a built-in (``"date"``,
            ``"amount"``), applied to the parsed value.
        max_new_tokens: generation budget; hitting it before the JSON closes is an error.
    """

    def __init__(
        self,
        schema: Any = None,
        model: TextGenerator | str | None = None,
        *,
        adapter: str | Path | None = None,
        name: str = "extractor",
        prompt: str | None = None,
        hooks: Mapping[str, Callable[[Any], Any] | str] | None = None,
        max_new_tokens: int = 256,
        device: str = "cpu",
        prices: PriceTable = DEFAULT_TABLE,
    ):
        self.name, self.prices, self.max_new_tokens = name, prices, max_new_tokens
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        self.model, self.adapter, self.adapter_info = self._load(model, adapter, device)
        if schema is None:
            schema = self.adapter_info.get("schema")
            if schema is None:
                raise ValueError(
                    f"extractor {name!r}: pass schema= (a pydantic model class or a JSON-schema "
                    "dict); the adapter records none"
                )
        self.pydantic_model, self.json_schema = _schema_parts(schema, name)
        self.fields = list(self.json_schema["properties"])
        self.instruction = self.adapter_info.get("instruction") if prompt is None else None
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPT
        if "{text}" not in self.prompt:
            raise ValueError(f"prompt of extractor {name!r} must contain {{text}}, got {prompt!r}")
        self.hooks = self._check_hooks(hooks or {})
        trained = self.adapter_info.get("fields")
        if trained and list(trained) != self.fields:
            import warnings

            warnings.warn(
                f"extractor {name!r}: the adapter was trained on fields {list(trained)}, "
                f"this schema asks for {self.fields}",
                stacklevel=2,
            )

    # ---------------------------------------------------------------------------- set-up
    def _load(
        self, model: Any, adapter: Any, device: str
    ) -> tuple[TextGenerator, str | None, dict]:
        given = isinstance(model, TextGenerator)
        if adapter is None:
            if given:
                return model, None, {}
            from slm_agents.models import CausalLM

            return (CausalLM(model, device=device) if model else CausalLM(device=device)), None, {}
        if given and not isinstance(model, AdapterHost):
            raise TypeError(
                f"extractor {self.name!r}: adapter={str(adapter)!r} needs a model that loads "
                f"LoRA adapters (adapters, load_adapter), and {type(model).__name__} does not; "
                "pass a CausalLM, or no adapter"
            )
        if given and str(adapter) in model.adapters:  # a name, loaded by the caller
            return model, str(adapter), {}
        from slm_agents.models.adapters import AdapterError, load_tuned, read_adapter_info

        path = Path(adapter)
        info = read_adapter_info(path)  # raises AdapterError naming what is wrong with it
        if not given:
            return load_tuned(path, base=model, name=self.name, device=device)
        if self.name not in model.adapters:
            try:
                model.load_adapter(str(path), self.name)
            except Exception as exc:  # PEFT, safetensors and shape errors: an unusable adapter
                raise AdapterError(
                    f"{path}: cannot load the LoRA adapter onto {model.name} "
                    f"({type(exc).__name__}: {str(exc).strip()[:300]})"
                ) from exc
        return model, self.name, info

    def _check_hooks(self, hooks: Mapping[str, Any]) -> dict[str, Callable[[Any], Any]]:
        checked = {}
        for field, hook in hooks.items():
            if field not in self.fields:
                raise ValueError(
                    f"extractor {self.name!r}: hook for unknown field {field!r}; "
                    f"the schema's fields are {self.fields}"
                )
            if isinstance(hook, str):
                if hook not in HOOKS:
                    raise ValueError(
                        f"extractor {self.name!r}: no built-in hook {hook!r} for field "
                        f"{field!r}; built-ins are {sorted(HOOKS)}, or pass a callable"
                    )
                hook = HOOKS[hook]
            if not callable(hook):
                raise ValueError(
                    f"extractor {self.name!r}: hook for {field!r} must be callable or a "
                    f"built-in name, got {type(hook).__name__}"
                )
            checked[field] = hook
        return checked

    # ---------------------------------------------------------------------------- running
    def _messages(self, task: Task) -> Messages:
        if self.instruction:  # built exactly as the adapter's training prompts were
            from slm_agents.specialists.receipts import Receipt, receipt_prompt

            lines = [line for line in task.text.split("\n") if line.strip()]  # as in training
            receipt = Receipt(id=task.id, lines=lines, fields={})
            return receipt_prompt(receipt, self.instruction)
        names = self.fields
        fields = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        return [{"role": "user", "content": fill_prompt(self.prompt, task, fields=fields)}]

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        prompts, ready, errors = prompts_for(tasks, self.name, self._messages)
        if not ready:
            return merge(len(tasks), errors, [])
        start = now()
        gens = self.model.generate(
            prompts,
            max_new_tokens=self.max_new_tokens,
            **call_options(self.model, json_schema=self.json_schema, adapter=self.adapter),
        )
        end = now()
        results = [self._result(t, g, start, end) for t, g in zip(ready, gens, strict=True)]
        return merge(len(tasks), errors, results)

    def _result(self, task: Task, gen: Generation, start: float, end: float) -> Result:
        output, confidence, error = None, 0.0, gen.error
        meta: dict[str, Any] = {**task.meta, "field_confidence": {}, "warnings": []}
        if error and gen.finish_reason == "length":
            error = (
                f"extraction stopped at max_new_tokens={self.max_new_tokens} before the JSON "
                f"was complete; raise max_new_tokens or bound the schema's strings (maxLength)"
            )
        if not error:
            raw = _json_object(gen.text)  # constrained decoding makes one; other backends may not
            if raw is None:
                error = f"the reply is not one JSON object: {excerpt(gen.text)}"
            else:
                meta["raw_output"] = raw
                meta["field_confidence"] = self._confidences(gen)
                fields = meta["field_confidence"].values()
                confidence = weakest(fields) if fields else gen.confidence
                output, error = self._finish(raw, meta["warnings"])
        step = llm_step(
            self.name,
            self.model.name,
            self.prices,
            gen.usage,
            output=output,
            confidence=confidence,
            start_s=start,
            end_s=end,
            error=error,
        )
        return Result(
            task.id,
            output=None if error else output,
            confidence=0.0 if error else confidence,
            path=[*redaction_steps(self.name, gen, start), step],
            latency_s=end - start,
            error=error,
            meta=meta,
        )

    def _confidences(self, gen: Generation) -> dict[str, float | None]:
        ids = gen.token_ids
        if ids and isinstance(self.model, TokenAligned) and len(ids) == len(gen.token_logprobs):
            ends = self.model.token_ends(ids)
            if ends and ends[-1] == len(gen.text):
                return field_confidences(gen.text, gen.token_logprobs, ends)
        # No token alignment (another backend): every field gets the generation's confidence,
        # None when the backend gives none.
        return {key: gen.confidence for key in value_spans(gen.text)}

    def _finish(self, raw: dict[str, Any], warnings: list[str]) -> tuple[Any, str | None]:
        """Apply the hooks and validate; a hook that raises or breaks the schema is undone."""
        values = dict(raw)
        for field, hook in self.hooks.items():
            if field not in values:
                continue
            try:
                values[field] = hook(values[field])
            except Exception as exc:  # a hook failing on one value: keep the raw value
                warnings.append(
                    f"hook for {field!r} failed on {raw[field]!r} "
                    f"({type(exc).__name__}: {exc}); kept the raw value"
                )
        output, rejected = self._validate(values)
        undo = [f for f in rejected if f in self.hooks and f in raw and values[f] != raw[f]]
        for field in undo:
            warnings.append(
                f"hook for {field!r} turned {raw[field]!r} into {values[field]!r}, which the "
                f"schema rejects ({rejected[field]}); kept the raw value"
            )
            values[field] = raw[field]
        if undo:
            output, rejected = self._validate(values)
        if rejected and values != raw:  # hooks together broke it (say, a cross-field check)
            warnings.append(f"the normalised output fails the schema ({rejected}); kept it raw")
            output, rejected = self._validate(dict(raw))
        if rejected:  # a keyword or validator that constrained decoding does not enforce
            return None, f"output does not match the schema: {rejected}"
        return output, None

    def _validate(self, values: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """(the output, or None; top-level field -> why the schema rejects it)."""
        if self.pydantic_model is not None:
            from pydantic import ValidationError

            try:
                return self.pydantic_model.model_validate(values), {}
            except ValidationError as exc:
                return None, {str(e["loc"][0]) if e["loc"] else "": e["msg"] for e in exc.errors()}
        import jsonschema

        validator = jsonschema.Draft202012Validator(self.json_schema)
        errors = {
            str(e.path[0]) if e.path else "": e.message for e in validator.iter_errors(values)
        }
        return (None if errors else values), errors


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it holds anything else."""
    try:
        value = json.loads(text)
        value_spans(text)  # one object, nothing around it: the field spans are well defined
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _schema_parts(schema: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """(pydantic class or None, the JSON schema dict), checked to describe an object."""
    model_cls = None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        model_cls, schema = schema, schema.model_json_schema()
    if isinstance(schema, str):
        schema = json.loads(schema)
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        raise ValueError(
            f"extractor {name!r}: schema must be a pydantic model class or a JSON schema of an "
            f"object with properties, got {type(schema).__name__}"
        )
    if not schema["properties"]:
        raise ValueError(f"extractor {name!r}: the schema has no properties to extract")
    return model_cls, schema


__all__ = [
    "DEFAULT_PROMPT",
    "HOOKS",
    "Extractor",
    "field_confidences",
    "normalise_amount",
    "normalise_date",
    "value_spans",
]

"""Field exact-match of a receipt extractor on SROIE-format receipts.

Generation goes through ``CausalLM.generate`` (the path agents use) with the recipe's prompt,
greedy decoding and the bounded JSON schema
:data:`slm_agents.finetune.recipes.RECEIPT_SCHEMA`, so every answer that finishes is valid JSON
with the four fields.

Scoring: a field is correct when the predicted and true values are equal after
:func:`normalise`: all whitespace removed and case folded (``"67, Jln  Mewah"`` equals
``"67,JLN MEWAH"``). Whitespace goes entirely because SROIE's labels and OCR disagree on the
spaces around punctuation; nothing else is forgiven (punctuation, OCR confusions, currency
prefixes, date formats all count). ``mean_spaces_kept`` is the stricter variant that only
collapses whitespace runs to one space, reported beside it. A receipt whose generation failed scores
0 on every field and its error is kept in ``rows``; it does not stop the evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slm_agents.finetune.data import DataError
from slm_agents.finetune.recipes import load_receipts
from slm_agents.specialists.receipts import FIELDS, RECEIPT_SCHEMA, Receipt, receipt_prompt


def normalise(value: Any, keep_spaces: bool = False) -> str:
    """Casefold and drop whitespace (``keep_spaces``: collapse runs to one space instead)."""
    text = str(value if value is not None else "")
    return (" " if keep_spaces else "").join(text.split()).casefold()


def field_matches(
    predicted: dict[str, Any] | None,
    truth: dict[str, Any],
    fields: Sequence[str] = FIELDS,
    keep_spaces: bool = False,
) -> dict[str, bool]:
    """Per field: does the prediction equal the truth after :func:`normalise`?"""
    predicted = predicted if isinstance(predicted, dict) else {}

    def same(a: Any, b: Any) -> bool:
        return normalise(a, keep_spaces) == normalise(b, keep_spaces)

    return {f: f in predicted and same(predicted[f], truth.get(f)) for f in fields}


def score(
    predictions: Sequence[dict[str, Any] | None],
    truths: Sequence[dict[str, Any]],
    fields: Sequence[str] = FIELDS,
) -> dict[str, Any]:
    """Per-field and mean exact-match over aligned predictions and truths (and the mean with
    spaces kept)."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")
    if not truths:
        raise ValueError("nothing to score: no receipts")

    def per_field(keep_spaces: bool) -> dict[str, float]:
        pairs = zip(predictions, truths, strict=True)
        matches = [field_matches(p, t, fields, keep_spaces) for p, t in pairs]
        return {f: round(sum(m[f] for m in matches) / len(matches), 4) for f in fields}

    loose, strict = per_field(False), per_field(True)
    return {
        "per_field": loose,
        "mean": round(sum(loose.values()) / len(fields), 4),
        "mean_spaces_kept": round(sum(strict.values()) / len(fields), 4),
    }


def evaluate_extractor(
    model_or_adapter: Any,
    receipts: str | Path | Sequence[Receipt],
    *,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    base: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 192,
    constrain: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Exact-match of an extractor on receipts (a SROIE JSONL path or loaded receipts).

    ``model_or_adapter``: an adapter directory from ``finetune extractor``, a base model name or
    path (zero-shot), or a loaded ``CausalLM``. ``ids`` keeps only those receipts (e.g. the
    adapter's ``holdout_ids``), ``limit`` the first N. ``constrain=False`` generates freely and
    parses the text as JSON (a row that does not parse is an error). Returns ``per_field``,
    ``mean``, ``n``, ``errors``, ``seconds`` and one entry per receipt in ``rows``.
    """
    from slm_agents.models.adapters import load_tuned
    from slm_agents.models.hf import GenerationOptions

    source = str(receipts) if isinstance(receipts, str | Path) else "receipts"
    rows = load_receipts(receipts) if isinstance(receipts, str | Path) else list(receipts)
    if ids is not None:
        wanted = set(map(str, ids))
        missing = sorted(wanted - {r.id for r in rows})
        if missing:
            raise DataError(f"{source}: no receipts with ids {missing[:10]}")
        rows = [r for r in rows if r.id in wanted]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{source}: no receipts to evaluate")
    lm, adapter, info = load_tuned(model_or_adapter, base=base)
    saved_batch, lm.batch_size = lm.batch_size, batch_size
    started = time.perf_counter()
    try:
        generations = lm.generate(
            [receipt_prompt(r) for r in rows],
            GenerationOptions(max_new_tokens=max_new_tokens, adapter=adapter),
            json_schema=RECEIPT_SCHEMA if constrain else None,
            progress=progress,
        )
    finally:
        lm.batch_size = saved_batch
    seconds = time.perf_counter() - started
    if not constrain:
        for gen in generations:
            _parse_free(gen)
    predictions = [g.parsed if g.error is None else None for g in generations]
    result = score(predictions, [r.fields for r in rows])
    per_row = []
    for receipt, gen, predicted in zip(rows, generations, predictions, strict=True):
        matches = field_matches(predicted, receipt.fields)
        entry: dict[str, Any] = {"id": receipt.id, "correct": sum(matches.values())}
        if gen.error is not None:
            entry["error"] = gen.error
        else:
            entry["wrong"] = {
                f: {"predicted": (predicted or {}).get(f), "true": receipt.fields[f]}
                for f, ok in matches.items()
                if not ok
            }
        per_row.append(entry)
    name = model_or_adapter if isinstance(model_or_adapter, str | Path) else lm.name
    return {
        "model": str(name),
        "base_model": lm.name,
        "recipe": info.get("recipe"),
        "data": source,
        "n": len(rows),
        **result,
        "constrained": constrain,
        "errors": sum(g.error is not None for g in generations),
        "seconds": round(seconds, 2),
        "receipts_per_second": round(len(rows) / seconds, 3),
        "generated_tokens": sum(g.usage.completion_tokens for g in generations if g.usage),
        "rows": per_row,
    }


def _parse_free(gen: Any) -> None:
    """Unconstrained output: the JSON object it starts with, or an error on the row."""
    import json

    if gen.error is not None:
        return
    try:
        value, _ = json.JSONDecoder().raw_decode(gen.text.strip())
    except json.JSONDecodeError as exc:
        gen.error = f"output is not JSON ({exc.msg} at char {exc.pos}): {gen.text[:80]!r}"
        return
    if isinstance(value, dict):
        gen.parsed = value
    else:
        gen.error = f"output is JSON {type(value).__name__}, not an object"

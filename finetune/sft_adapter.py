"""Writing an SFT run's output directory: the PEFT adapter files plus ``sft.json``.

The reading side (checking the files, ``read_adapter_info``, ``load_tuned``) is
:mod:`slm_agents.models.adapters`: inference needs it without the training code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slm_agents.models.adapters import SFT_FILE
from slm_agents.models.sources import BUNDLED


def save_adapter(
    model: Any,
    output: Path,
    *,
    base: str,
    recipe: str,
    settings: dict[str, Any],
    train: dict[str, Any],
    metrics: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save ``model``'s adapter and ``sft.json`` (what was trained on what, and how well).

    ``extra`` (a recipe's split, instruction, schema) goes at the top level, where
    ``read_adapter_info`` readers such as the Extractor look for it. Returns the metadata.
    """
    model.save_pretrained(output)
    bundled = BUNDLED.get(base.lower())
    meta = {
        "format": 1,
        "kind": "causal-lora",
        "base_model": base,
        "base_hub_id": bundled.hub_id if bundled else None,
        "recipe": recipe,
        "settings": settings,
        "train": train,
        "metrics": metrics,
        **extra,
    }
    (output / SFT_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta

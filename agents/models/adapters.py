"""Causal-LM LoRA adapter directories: check their files, read their metadata, load them.

An adapter directory (from ``slm-agents finetune sft|extractor|code``) holds PEFT's
``adapter_config.json`` and weights plus ``sft.json``: the base model, the recipe, its settings
and metrics, and for the extractor the instruction and schema it was trained with. Reading it
lives here, with the models, because inference needs it (the Extractor builds its prompt from
it) and inference must not depend on the training code; ``slm_agents.finetune`` writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SFT_FILE = "sft.json"


class AdapterError(ValueError):
    """An adapter directory is missing, incomplete or unreadable; the message says which."""


def read_adapter_info(path: str | Path) -> dict[str, Any]:
    """Check an adapter directory's files and return its ``sft.json`` (or a minimal stand-in)."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"{path}: not a directory (expected a LoRA adapter from finetune)")
    config = path / "adapter_config.json"
    if not config.exists():
        raise AdapterError(f"{path}: no adapter_config.json; not a PEFT adapter directory")
    peft_config = _read_json(config)
    weights = [path / "adapter_model.safetensors", path / "adapter_model.bin"]
    if not any(w.exists() for w in weights):
        raise AdapterError(f"{path}: no adapter_model.safetensors; the adapter weights are missing")
    if (path / SFT_FILE).exists():
        return _read_json(path / SFT_FILE)
    return {"base_model": peft_config.get("base_model_name_or_path"), "recipe": None}


def load_tuned(
    model_or_adapter: Any, *, base: str | None = None, name: str = "sft", device: str = "cpu"
) -> tuple[Any, str | None, dict[str, Any]]:
    """A ``CausalLM`` ready to generate, the adapter name to pass it, and the adapter's info.

    Accepts a loaded ``CausalLM`` (used as it is), an adapter directory (its base model is
    loaded, then the adapter under ``name``; ``base`` overrides the recorded base), or a model
    name, path or hub id (no adapter: zero-shot).
    """
    from slm_agents.models import CausalLM

    if isinstance(model_or_adapter, CausalLM):
        return model_or_adapter, None, {}
    path = Path(str(model_or_adapter))
    if not (path.is_dir() and (path / "adapter_config.json").exists()):
        if path.is_dir() and (path / SFT_FILE).exists():
            read_adapter_info(path)  # raises, naming the missing file
        return CausalLM(str(model_or_adapter), device=device), None, {}
    info = read_adapter_info(path)
    base = base or info.get("base_model")
    if not base:
        raise AdapterError(f"{path}: no base model recorded; pass the base model explicitly")
    lm = CausalLM(base, device=device)
    try:
        lm.load_adapter(str(path), name)
    except Exception as exc:  # safetensors, PEFT and shape errors all mean "unusable adapter"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(
            f"{path}: cannot load the LoRA adapter onto {base} ({type(exc).__name__}: "
            f"{reason[:300]})"
        ) from exc
    return lm, name, info


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: not valid JSON ({exc}); the adapter is corrupted") from exc
    if not isinstance(value, dict):
        raise AdapterError(f"{path}: expected a JSON object; the adapter is corrupted")
    return value

"""Reading a YAML config file into a pydantic model, with one error naming file and field.

Team specs and serve configs are read the same way: a missing file, unreadable YAML, a
non-mapping or a field that fails validation is one error of the caller's class, prefixed with
the path, with every problem as ``field.path: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Config = TypeVar("Config", bound=BaseModel)


def load_yaml_model(
    path: Path, model: type[Config], what: str, error: type[Exception], **extra: Any
) -> Config:
    """``model(**yaml, **extra)`` from ``path``; any problem raises ``error`` naming it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: not readable YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} is a YAML mapping, got {type(raw).__name__}")
    try:
        return model(**raw, **extra)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise error(f"{path}: {problems}") from exc

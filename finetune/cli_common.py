"""What the finetune, compress and evaluate commands share: the summary table and data loading.

Each command prints a summary table; ``--json OUT`` writes the same facts for other tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from slm_agents.console import console, fail

DATA_HELP = "CSV or JSONL file."


def print_summary(title: str, facts: dict[str, Any], json_out: Path | None) -> None:
    """The facts as a table (nested values left out), and all of them as JSON to ``json_out``."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in facts.items():
        if isinstance(value, dict | list):
            continue
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(facts, indent=2, default=str))
        console.print(f"wrote {json_out}")


def load_labelled_or_fail(path: Path, text_column: str, label_column: str) -> Any:
    """Labelled texts from ``path``; a data problem is one red line and exit code 2."""
    from slm_agents.finetune.data import DataError, load_labelled

    try:
        return load_labelled(path, text_column, label_column)
    except DataError as exc:
        raise fail(str(exc)) from exc


def load_optional(path: Path | None, text_column: str, label_column: str) -> Any:
    return load_labelled_or_fail(path, text_column, label_column) if path else None

"""What every ``slm-agents`` command shares: the rich console, error exits, quiet loading."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()


def fail(message: str) -> typer.Exit:
    """Print a red one-line error; ``raise fail(...)`` exits with code 2."""
    console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def quiet_transformers() -> None:
    """Loading bars and load reports from transformers are noise on a command line."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()

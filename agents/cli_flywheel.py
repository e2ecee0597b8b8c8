"""``slm-agents flywheel ...``: logged LLM-tier calls on their way to SLM specialists.

``collect`` exports the LLM-tier calls of an MLflow experiment's request traces to a call log
(``slm_agents.finetune.flywheel``; the format is in ``docs/flywheel.md``).
:mod:`slm_agents.cli` registers this app as ``flywheel``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from slm_agents.console import console, fail

flywheel_app = typer.Typer(
    help="Turn logged LLM-tier calls into SLM specialists (collect so far).",
    no_args_is_help=True,
)


@flywheel_app.command("collect")
def collect_command(
    experiment: str = typer.Option(
        ..., help="MLflow experiment to read (slm-agents run logs to 'slm-agents' by default)."
    ),
    out: Path = typer.Option(..., help="The call log to write (JSONL, one call a line)."),
    since: str = typer.Option(None, help="Only traces from this time on (ISO 8601; UTC)."),
    tracking_uri: str = typer.Option(
        None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."
    ),
):
    """Export the LLM-tier calls of an experiment's request traces to a call log."""
    from slm_agents.finetune.flywheel.calls import write_calls
    from slm_agents.finetune.flywheel.collect import CollectError, collect_calls

    try:
        found = collect_calls(experiment, since=since, tracking_uri=tracking_uri)
    except CollectError as exc:
        raise fail(str(exc)) from exc
    write_calls(out, found.calls)
    console.print(
        f"{len(found.calls)} LLM-tier calls from {found.traces_with_calls} of {found.traces} "
        f"traces in {experiment!r} -> {out}"
    )

"""``slm-agents run TEAM.yaml --input FILE --output results.jsonl``: the main job.

A plain typer command function; :mod:`slm_agents.cli` registers it as ``run`` (this module
knows no app, so nothing imports back). Prints live progress and a summary table; bad specs
and unreadable input files are one red line naming the problem.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from slm_agents.console import console, fail, quiet_transformers


def run_command(
    team: Path = typer.Argument(..., help="Team spec YAML (see examples/*.yaml)."),
    input_file: Path = typer.Option(..., "--input", help="Requests: CSV or JSONL."),
    output: Path = typer.Option(..., help="Results JSONL; run again with it to resume."),
    address: str = typer.Option(None, help="Ray cluster address; hosts the agents on Ray."),
    batch_size: int = typer.Option(16, min=1, help="Requests per batch (and per output flush)."),
    limit: int = typer.Option(None, min=1, help="Only the first N requests of the input."),
    track: bool = typer.Option(True, help="Log the job to MLflow (one run, a trace per request)."),
):
    """Run a team over a file of requests: results appended as they finish, resumable."""
    from slm_agents.job import run_job
    from slm_agents.requests_file import RequestsFileError
    from slm_agents.teamspec import TeamSpecError

    quiet_transformers()
    try:
        summary = run_job(
            team, input_file, output, address=address, batch_size=batch_size, limit=limit,
            track=track,
        )  # fmt: skip
    except (TeamSpecError, RequestsFileError) as exc:
        raise fail(str(exc)) from exc
    table = Table(title=f"{team.stem}: {summary.requests} requests -> {output}")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in summary.table_rows().items():
        table.add_row(key, value)
    console.print(table)
    if summary.run_id:
        console.print(f"MLflow run [bold]{summary.run_id}[/] (one trace per request)")

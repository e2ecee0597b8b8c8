"""``slm-agents flywheel ...``: logged LLM-tier calls become SLM specialists.

``collect`` exports the LLM-tier calls of an MLflow experiment's request traces to a call log;
``run`` turns a call log into a team (``DIR/team.yaml``), its clusters and a report; ``evaluate``
scores that team on calls it never saw (``slm_agents.finetune.flywheel``; ``docs/flywheel.md``).
The options and the files written are a contract other tools script against.
:mod:`slm_agents.cli` registers this app as ``flywheel``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slm_agents.console import console, fail

flywheel_app = typer.Typer(
    help="Turn logged LLM-tier calls into SLM specialists: collect, run, evaluate.",
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


def _read_calls(path: Path) -> list:
    """The calls of a call log; a bad line is reported and skipped, an unusable file fails."""
    from slm_agents.finetune.flywheel.calls import CallLogError, read_calls

    try:
        log = read_calls(path)
    except (CallLogError, OSError) as exc:
        raise fail(f"{path}: {exc}") from exc
    for error in log.errors[:5]:
        console.print(f"[yellow]skipped[/] {path}: {error}")
    if len(log.errors) > 5:
        console.print(f"[yellow]skipped[/] {len(log.errors) - 5} more bad lines in {path}")
    return log.calls


def _read_llm_tier(path: Path | None) -> dict | None:
    """The LLM tier's agent entry from a YAML file (validated as a team-spec agent)."""
    if path is None:
        return None
    import yaml
    from pydantic import ValidationError

    from slm_agents.teamspec import AgentEntry

    try:
        entry = yaml.safe_load(path.read_text(encoding="utf-8"))
        AgentEntry(**entry)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError) as exc:
        raise fail(f"--llm-tier {path}: not a readable YAML mapping ({exc})") from exc
    except ValidationError as exc:
        raise fail(f"--llm-tier {path}: not a valid agent entry: {exc}") from exc
    return entry


@flywheel_app.command("run")
def run_command(
    calls: Path = typer.Option(..., help="The call log to learn from (JSONL, docs/flywheel.md)."),
    out: Path = typer.Option(..., help="Folder for team.yaml, clusters.json, report.md, models."),
    budget_minutes: float = typer.Option(25.0, help="Time for the whole run, training included."),
    target_agreement: float = typer.Option(
        0.95, help="Agreement with the LLM's answers each cluster keeps (thresholds)."
    ),
    llm_tier: Path = typer.Option(
        None, help="YAML file with the LLM tier's agent entry (kind: llm, endpoint: ...)."
    ),
    min_share: float = typer.Option(
        0.3, help="An SLM is used for a cluster only if it keeps this share of its calls."
    ),
    fresh: bool = typer.Option(False, help="Ignore an earlier run in OUT; start over."),
    tracking_uri: str = typer.Option(
        None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."
    ),
):
    """Cluster the calls into tasks, train an SLM per task, write a team that uses them."""
    from slm_agents import tracking
    from slm_agents.finetune.flywheel.curate import CurateError
    from slm_agents.finetune.flywheel.runner import FlywheelError, run_flywheel

    entry = _read_llm_tier(llm_tier)
    logged = _read_calls(calls)
    if tracking_uri:
        tracking.configure(tracking_uri=tracking_uri)
    try:
        done = run_flywheel(logged, out, budget_minutes=budget_minutes, target=target_agreement,
                            min_share=min_share, llm_tier=entry, fresh=fresh,
                            say=console.print)  # fmt: skip
    except (FlywheelError, CurateError) as exc:
        raise fail(str(exc)) from exc
    if entry is None:
        console.print(
            "[yellow]no --llm-tier given:[/] team.yaml sends escalations to a placeholder "
            "endpoint (http://127.0.0.1:8000/v1); replace it, or pass --llm-tier"
        )
    est = done.estimate
    share = "n/a" if est["slm_share"] is None else f"{est['slm_share']:.0%}"
    ratio = "n/a" if est["cost_ratio"] is None else f"{est['cost_ratio']:.0%}"
    console.print(
        f"round {done.round}: {done.clustering.k} clusters, "
        f"{sum(p.specialist is not None for p in done.plans)} with an SLM; trained "
        f"{len(done.trained)}, kept {len(done.kept)}; on the held-out calls SLMs keep {share} "
        f"at {ratio} of the all-LLM cost ({done.seconds / 60:.1f} min)"
    )
    console.print(f"wrote {out / 'team.yaml'}, {out / 'clusters.json'}, {out / 'report.md'}")


@flywheel_app.command("evaluate")
def evaluate_command(
    folder: Path = typer.Argument(..., help="A flywheel run's folder (flywheel run --out)."),
    calls: Path = typer.Option(..., help="Held-out calls the run never saw (JSONL)."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the scores (JSON)."),
    llm_tier: Path = typer.Option(
        None, help="YAML file with the LLM tier's agent entry (default: the team's own)."
    ),
):
    """Run the folder's team on held-out calls: SLM share, agreement, cost ratio."""
    from slm_agents.finetune.flywheel.evaluate import evaluate_team
    from slm_agents.finetune.flywheel.runner import FlywheelError
    from slm_agents.teamspec import TeamSpecError

    entry = _read_llm_tier(llm_tier)
    logged = _read_calls(calls)
    try:
        scores = evaluate_team(folder, logged, llm_tier=entry)
    except (FlywheelError, TeamSpecError) as exc:
        raise fail(str(exc)) from exc
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    tier = scores["llm_tier"]
    if tier["mode"] != "endpoint":
        console.print(f"[yellow]LLM tier not reachable[/] ({tier['why']}): escalated calls are "
                      "scored with their logged answers")  # fmt: skip
    ratio = "n/a" if scores["cost_ratio"] is None else f"{scores['cost_ratio']:.0%}"
    console.print(
        f"{scores['n']} calls: SLMs answered {scores['slm_share']:.0%}, agreement with the "
        f"LLM {scores['agreement']:.3f}, cost {ratio} of all-LLM -> {json_out}"
    )

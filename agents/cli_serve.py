"""``slm-agents serve [CONFIG.yaml]``: the agents behind an OpenAI-compatible API on Ray Serve.

A plain typer command function; :mod:`slm_agents.cli` registers it as ``serve``. Prints the base
URL once every deployment answers, and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

import typer

from slm_agents.console import console, fail, quiet_transformers


def serve_command(
    config: Path = typer.Argument(
        None, help="Serve config YAML (docs/serve.md); without one, every bundled model."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port."),
    api_key: str = typer.Option(
        None,
        envvar="SLM_AGENTS_API_KEY",
        help="Requests must send 'Authorization: Bearer KEY' (default: $SLM_AGENTS_API_KEY).",
        show_envvar=True,
    ),
    address: str = typer.Option(
        None, envvar="RAY_ADDRESS", help="Ray cluster to run on (default: a local one)."
    ),
):
    """Serve the models, their LoRA adapters and teams over the OpenAI API."""
    from slm_agents.serve.app import serve_until_stopped
    from slm_agents.serve.config import ServeConfigError, load_serve_config

    quiet_transformers()
    try:
        serve_config = load_serve_config(config)
    except ServeConfigError as exc:
        raise fail(str(exc)) from exc

    def ready(base_url: str) -> None:
        ids = [m.model_id for m in serve_config.models]
        ids += [f"team:{name}" for name in serve_config.teams]
        console.print(f"[bold green]serving[/] {', '.join(ids)} at [bold]{base_url}[/]")
        console.print("Ctrl-C stops the server.")

    console.print("starting Ray Serve and loading the models...")
    try:
        serve_until_stopped(
            serve_config, on_ready=ready, host=host, port=port, api_key=api_key, address=address
        )
    except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: a deployment failed
        raise fail(str(exc)) from exc
    console.print("stopped.")

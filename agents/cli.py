"""The ``slm-agents`` command line: run, models, generate, classify, demo; finetune, compress,
evaluate.

Heavy libraries load inside each command, so ``slm-agents --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from slm_agents.cli_flywheel import flywheel_app
from slm_agents.cli_run import run_command
from slm_agents.cli_serve import serve_command
from slm_agents.console import console
from slm_agents.console import fail as _fail
from slm_agents.console import quiet_transformers as _quiet_transformers
from slm_agents.finetune.cli import compress_app, evaluate_app, finetune_app

app = typer.Typer(
    help="Small language models doing the real work of agent systems.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("run")(run_command)  # the main job (slm_agents.cli_run)
app.command("serve")(serve_command)  # the OpenAI-compatible server (slm_agents.cli_serve)
app.add_typer(finetune_app, name="finetune")
app.add_typer(compress_app, name="compress")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(flywheel_app, name="flywheel")  # logged LLM calls -> SLMs (slm_agents.cli_flywheel)


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List the embedded models: parameters, size on disk, source package, cache location."""
    from dataclasses import asdict

    from slm_agents.models.catalog import list_models
    from slm_agents.models.sources import cache_dir

    infos = list_models()
    if as_json:
        print(json.dumps([asdict(i) for i in infos], indent=2))
        return
    table = Table(title=f"Embedded models (cache: {cache_dir()})")
    table.add_column("name", no_wrap=True)
    for column in ("kind", "parameters", "size", "source"):
        table.add_column(column)
    table.add_column("location / cache", overflow="fold")
    for i in infos:
        where = i.location or f"[red]not installed[/]: {i.install}"
        if i.cache:
            where += f"\ncache: {i.cache}"
        params = f"{i.parameters / 1e6:.1f}M" if i.parameters else "-"
        table.add_row(i.name, i.kind, params, _human_size(i.size_bytes), i.source, where)
    console.print(table)
    console.print("Any Hugging Face id (org/name) or local folder also works as --model.")


def _read_schema(value: str | None) -> Any:
    if value is None:
        return None
    path = Path(value)
    text = path.read_text(encoding="utf-8") if path.exists() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--json-schema is neither a JSON file nor JSON text: {exc}") from exc


def _read_inputs(items: list[str] | None, file: Path | None) -> list[str]:
    texts = list(items or [])
    if file is not None:
        source = sys.stdin if str(file) == "-" else open(file, encoding="utf-8")  # noqa: SIM115
        with source:
            texts += [line.rstrip("\n") for line in source if line.strip()]
    if not texts:
        raise _fail("nothing to process: pass text arguments or --file (one per line, - for stdin)")
    return texts


@app.command()
def generate(
    prompts: list[str] = typer.Argument(None, help="Prompts (each becomes one user message)."),
    file: Path = typer.Option(None, "--file", "-f", help="One prompt per line; - for stdin."),
    model: str = typer.Option("smollm2-135m-instruct", help="Bundled name, path or hub id."),
    max_new_tokens: int = typer.Option(128, min=1),
    temperature: float = typer.Option(0.0, min=0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0),
    seed: int = typer.Option(None),
    stop: list[str] = typer.Option(None, help="Stop string; repeatable."),
    json_schema: str = typer.Option(None, help="JSON schema (file or text) the output must match."),
    regex: str = typer.Option(None, help="Regex the output must match."),
    quantize: str = typer.Option(None, help="int8 for dynamic quantization (CPU)."),
    device: str = typer.Option("auto"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per prompt on stdout."),
):
    """Generate text with a causal SLM, batched, with optional JSON-schema or regex constraints."""
    from slm_agents.models import CausalLM, ModelNotFoundError

    texts = _read_inputs(prompts, file)
    _quiet_transformers()
    try:
        lm = CausalLM(model, device=device, quantize=quantize)
        gens = lm.generate(
            texts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=tuple(stop or ()),
            json_schema=_read_schema(json_schema),
            regex=regex,
        )
    except (ModelNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        for g in gens:
            print(
                json.dumps(
                    {
                        "text": g.text,
                        "parsed": g.parsed if not hasattr(g.parsed, "model_dump") else None,
                        "confidence": g.confidence,
                        "finish_reason": g.finish_reason,
                        "prompt_tokens": g.usage.prompt_tokens,
                        "completion_tokens": g.usage.completion_tokens,
                        "latency_s": g.latency_s,
                        "error": g.error,
                    }
                )
            )
    else:
        for prompt, g in zip(texts, gens, strict=True):
            console.rule(prompt[:80])
            if g.error:
                console.print(f"[red]{g.error}[/]")
                continue
            console.print(g.text, markup=False)
            console.print(
                f"[dim]confidence {g.confidence:.2f} · {g.usage.completion_tokens} tokens · "
                f"{g.finish_reason} · {g.latency_s:.2f} s[/]"
            )
    if any(g.error for g in gens):
        raise typer.Exit(code=1)


@app.command()
def classify(
    texts: list[str] = typer.Argument(None, help="Texts to classify."),
    file: Path = typer.Option(None, "--file", "-f", help="One text per line; - for stdin."),
    labels: str = typer.Option(
        None, help="Zero-shot labels: 'a,b,c', or a JSON/YAML file of {label: description}."
    ),
    model: str = typer.Option(
        "all-minilm-l6-v2", help="A trained classifier directory, or an encoder for zero-shot."
    ),
    device: str = typer.Option("auto"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per text on stdout."),
):
    """Classify texts: label, confidence and the full probability vector."""
    import yaml

    from slm_agents.models import EncoderClassifier, ModelNotFoundError

    items = _read_inputs(texts, file)
    _quiet_transformers()
    label_spec: Any = None
    if labels:
        path = Path(labels)
        if path.exists():
            label_spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            label_spec = [x.strip() for x in labels.split(",") if x.strip()]
    try:
        clf = EncoderClassifier(model, labels=label_spec, device=device)
    except (ModelNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    preds = clf.predict(items)
    if as_json:
        for p in preds:
            print(
                json.dumps(
                    {
                        "label": p.label,
                        "confidence": p.confidence,
                        "error": p.error,
                        "probabilities": p.probabilities,
                    }
                )
            )
    else:
        table = Table()
        for column in ("text", "label", "confidence", "runner-up"):
            table.add_column(column)
        for text, p in zip(items, preds, strict=True):
            if p.error:
                table.add_row(text[:60], f"[red]{p.error}[/]", "", "")
                continue
            second = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[1]
            table.add_row(text[:60], p.label, f"{p.confidence:.2f}", f"{second[0]} {second[1]:.2f}")
        console.print(table)
    if any(p.error for p in preds):
        raise typer.Exit(code=1)


@app.command()
def demo(
    tickets: int = typer.Option(40, min=1, help="How many sample tickets to route."),
    max_new_tokens: int = typer.Option(48, min=1),
):
    """Run the embedded models on real tickets and a receipt; log everything to MLflow."""
    from slm_agents.demo import run_demo
    from slm_agents.tracking import get_tracker
    from slm_agents.tracking.failures import mask_secrets

    _quiet_transformers()
    console.print("[bold]slm-agents demo[/]: zero-shot ticket routing, SLM replies, receipt JSON")
    result = run_demo(n_tickets=tickets, max_new_tokens=max_new_tokens)

    routed = Table(title=f"Ticket routing (zero-shot MiniLM), first 10 of {result.tickets}")
    for column in ("ticket", "expected", "predicted", "conf"):
        routed.add_column(column)
    for row in result.rows[:10]:
        mark = "green" if row["correct"] else "red"
        routed.add_row(
            row["text"][:60],
            row["expected"],
            f"[{mark}]{row['predicted']}[/]",
            f"{row['confidence']:.2f}",
        )
    console.print(routed)
    for reply in result.replies:
        console.print(f"[bold]ticket:[/] {reply['ticket']}")
        console.print(f"[bold]SmolLM2 reply[/] (confidence {reply['confidence']:.2f}): ", end="")
        console.print(reply["reply"], markup=False)
    console.print("[bold]receipt[/]", result.receipt["id"], "extracted (schema-valid JSON):")
    console.print_json(json.dumps(result.receipt["extracted"]))

    summary = Table(title="Summary")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key, value in result.metrics.items():
        summary.add_row(key, f"{value:.3f}")
    console.print(summary)
    store = mask_secrets(get_tracker().tracking_uri)  # a URI may carry a password or token
    if result.run_id:
        console.print(
            f"MLflow run [bold]{result.run_id}[/] in {store}; browse it with "
            f"`mlflow ui --backend-store-uri {store}`"
        )


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

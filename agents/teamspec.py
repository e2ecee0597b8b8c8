"""Team specs: a YAML file names the agents, the pattern that connects them, and the input.

Validated before anything loads: an error names the file, the field (``agents.router.kind``)
and the allowed values, or the agent name that does not exist. Example::

    name: support-desk
    agents:
      router: {kind: classifier, model: all-minilm-l6-v2, labels_file: departments.yaml}
      writer: {kind: llm, model: smollm2-135m-instruct, prompt: "Reply briefly: {text}"}
    flow:
      cascade: {small: router, large: writer, threshold: 0.5}
    input: {text_column: text, id_column: id, label_column: department}

``flow`` is exactly one of ``agent: NAME``, ``cascade: {small, large, threshold}``,
``route: {router, routes: {label: NAME}, default}`` or ``pipeline: [NAME, ...]``.
Relative paths (``labels_file``, adapters) are read relative to the spec file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TeamSpecError(ValueError):
    """The team spec is unusable; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentEntry(_Strict):
    kind: Literal["llm", "classifier"]
    model: str
    prompt: str = "{text}"
    system: str | None = None
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = Field(128, ge=1, le=4096)
    labels: list[str] | dict[str, str] | None = None
    labels_file: str | None = None
    adapter: str | None = None
    adapters: dict[str, str] = Field(default_factory=dict)
    quantize: Literal["int8"] | None = None
    confidence: Literal["probability", "margin"] = "probability"
    device: str = "auto"


class CascadeFlow(_Strict):
    small: str
    large: str
    threshold: float = Field(0.5, ge=0.0, le=1.0)


class RouteFlow(_Strict):
    router: str
    routes: dict[str, str] = Field(min_length=1)
    default: str | None = None


class Flow(_Strict):
    agent: str | None = None
    cascade: CascadeFlow | None = None
    route: RouteFlow | None = None
    pipeline: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Flow:
        chosen = [k for k in ("agent", "cascade", "route", "pipeline") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError(
                f"give exactly one of agent, cascade, route, pipeline (got {chosen or 'none'})"
            )
        return self

    def names(self) -> list[tuple[str, str]]:
        """(field path, agent name) for every agent the flow refers to."""
        if self.agent:
            return [("flow.agent", self.agent)]
        if self.cascade:
            return [("flow.cascade.small", self.cascade.small),
                    ("flow.cascade.large", self.cascade.large)]  # fmt: skip
        if self.route:
            pairs = [("flow.route.router", self.route.router)]
            pairs += [(f"flow.route.routes.{k}", v) for k, v in self.route.routes.items()]
            if self.route.default:
                pairs.append(("flow.route.default", self.route.default))
            return pairs
        return [(f"flow.pipeline[{i}]", name) for i, name in enumerate(self.pipeline or [])]


class InputSpec(_Strict):
    text_column: str = "text"
    id_column: str = "id"
    label_column: str | None = None


class TeamSpec(_Strict):
    name: str = Field(min_length=1)
    agents: dict[str, AgentEntry] = Field(min_length=1)
    flow: Flow
    input: InputSpec = Field(default_factory=InputSpec)
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    source: Path | None = Field(None, exclude=True)

    def build(self) -> tuple[Any, Any]:
        """(Team of the named agents, the entry Agent the flow describes). Loads the models."""
        from agents.patterns import Cascade, Pipeline, Route
        from agents.pricing import PriceTable
        from agents.runtime.spec import AgentSpec
        from agents.team import Team

        PriceTable(self.prices)  # validated here, before any model loads
        base = self.source.parent if self.source else Path.cwd()
        team = Team({name: AgentSpec(**self._spec_args(name, e, base)).build()
                     for name, e in self.agents.items()})  # fmt: skip
        flow = self.flow
        if flow.agent:
            return team, team[flow.agent]
        if flow.cascade:
            c = flow.cascade
            return team, Cascade(team[c.small], team[c.large], threshold=c.threshold)
        if flow.route:
            r = flow.route
            routes = {label: team[name] for label, name in r.routes.items()}
            return team, Route(team[r.router], routes, default=r.default)
        return team, Pipeline([team[name] for name in flow.pipeline or []])

    @staticmethod
    def _spec_args(name: str, entry: AgentEntry, base: Path) -> dict[str, Any]:
        args = entry.model_dump(exclude={"labels_file"})
        if entry.labels_file:
            args["labels"] = _read_labels(base / entry.labels_file)
        args["adapters"] = {k: str(base / v) for k, v in entry.adapters.items()}
        local = base / entry.model
        if local.exists():
            args["model"] = str(local)
        return {"name": name, **args}


def load_team_spec(path: str | Path) -> TeamSpec:
    """Read and validate a team spec; every problem is a TeamSpecError naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TeamSpecError(f"{path}: no such file") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TeamSpecError(f"{path}: not readable YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise TeamSpecError(f"{path}: a team spec is a YAML mapping, got {type(raw).__name__}")
    try:
        spec = TeamSpec(**raw, source=path)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise TeamSpecError(f"{path}: {problems}") from None
    known = sorted(spec.agents)
    for field, name in spec.flow.names():
        if name not in spec.agents:
            raise TeamSpecError(f"{path}: {field}: no agent {name!r}; agents are {known}")
    for name, entry in spec.agents.items():
        if entry.adapter is not None and entry.adapter not in entry.adapters:
            raise TeamSpecError(
                f"{path}: agents.{name}.adapter: {entry.adapter!r} is not in its adapters "
                f"{sorted(entry.adapters)}"
            )
        if entry.labels_file and not (path.parent / entry.labels_file).exists():
            raise TeamSpecError(f"{path}: agents.{name}.labels_file: no file {entry.labels_file}")
    return spec


def _read_labels(path: Path) -> dict[str, str] | list[str]:
    """Labels from YAML: a list, ``{label: description}``, or a grouping with ``description``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return [str(x) for x in data]
    if isinstance(data, dict):
        return {
            str(k): (v["description"] if isinstance(v, dict) and "description" in v else str(v))
            for k, v in data.items()
        }
    raise TeamSpecError(f"{path}: labels must be a list or a mapping")

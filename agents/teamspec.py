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
``route: {router, routes: {label: TARGET}, default}`` or ``pipeline: [NAME, ...]``.
Relative paths (``labels_file``, ``departments_file``, adapters, ``schema_file``,
``centroids_file``) are read relative to the spec file; ``model`` too when such a file or folder
exists.

A route's TARGET is an agent name, or a cascade of two agents for that label only::

    flow:
      route:
        router: router
        routes:
          tickets: {cascade: {small: slm-tickets, large: llm-tickets, threshold: 0.62}}
          receipts: llm-receipts

``{cascade: {small, large, threshold, answer_field}}`` is the Cascade of ``flow.cascade``,
built as one named ``cascade:LABEL`` (so traces tell the routes' cascades apart), except that
its ``threshold`` is a number in [0, 1] ('calibrated' applies to ``flow.cascade`` only).

Agent kinds: ``llm`` and ``classifier`` (plain agents), the specialists ``support-router``
(needs ``departments_file``), ``extractor`` (``json_schema`` or ``schema_file``, optional
``adapter_dir`` and ``hooks``), ``coder`` (``max_repairs``, ``limits``, ``style``: ``chat`` or
``completion`` for a base model), ``planner``
(``specialists``: the names it may call), and ``cluster-router`` (needs ``centroids_file``,
the JSON :func:`slm_agents.cluster_router.save_centroids` writes; ``model`` is the encoder the
centroids were computed with): it labels each request with its nearest task, as the flywheel
found the tasks (``slm_agents.cluster_router``). ``hosting: {ray: true, num_cpus, replicas, ...}``
hosts every agent but the planner as a Ray actor (the fields of ``HostingConfig``).
``prices: {MODEL: {input_per_million, output_per_million}}`` prices every agent's calls
(in process and on Ray), over the defaults of ``slm_agents.pricing``.

An agent of kind ``llm``, ``planner``, ``extractor`` or ``coder`` can run on an OpenAI-compatible
HTTP endpoint instead of a local model (``slm_agents.models.OpenAIEndpoint``)::

    llm-tier:
      kind: llm
      endpoint: {base_url: "http://127.0.0.1:8000/v1", model: gpt-4o-mini,
                 api_key_env: OPENAI_API_KEY}
      prompt: "Answer briefly: {text}"

It then takes no ``model`` (nor ``adapters``, ``quantize``, ``adapter_dir``: the server hosts the
model; ``adapter`` names an adapter it serves), ``max_new_tokens`` is the request's
``max_tokens``, and it counts as ``tier: llm`` unless it says otherwise. ``api_key_env`` names
the environment variable holding the key (omit it for a local server); optional
``max_concurrency``, ``timeout_s``, ``max_retries``. The endpoint's ``model`` is the name
``prices:`` prices it by.

``privacy: {on_prem, local_hosts, redact, store_raw}`` (``slm_agents.privacy.PrivacyPolicy``):
an endpoint agent is external unless its host is loopback or in ``local_hosts``
(``endpoint.external: true|false`` decides instead when given). What an external agent is sent
is redacted (the kinds of ``redact``, default all) and its answer restored; ``on_prem: true``
refuses a team with an external agent; ``store_raw: true`` keeps raw text in MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from slm_agents.config_files import load_yaml_model
from slm_agents.pricing import Price
from slm_agents.privacy.policy import PrivacyPolicy, host_of, is_external
from slm_agents.runtime.config import HostingConfig


class TeamSpecError(ValueError):
    """The team spec is unusable; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


KIND_FIELDS = {
    "support-router": {"departments_file", "threshold", "temperature", "train"},
    "review": {"queue_file"},
    "extractor": {"schema_file", "adapter_dir", "hooks"},
    "coder": {"max_repairs", "limits", "style"},
    "planner": {"specialists", "descriptions", "max_steps", "compose"},
    "cluster-router": {"centroids_file"},
}
REQUIRED = {
    "support-router": ("departments_file",),
    "planner": ("specialists",),
    "cluster-router": ("centroids_file",),
}
ENDPOINT_KINDS = ("llm", "planner", "extractor", "coder")  # the kinds a TextGenerator serves
LOCAL_MODEL_FIELDS = ("adapters", "quantize", "adapter_dir")  # meaningless with an endpoint


class EndpointEntry(_Strict):
    """``endpoint:`` of an agent: the arguments of ``slm_agents.models.OpenAIEndpoint``."""

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(None, min_length=1)
    max_concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    external: bool | None = None  # None: external unless the host is loopback or local_hosts

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL (http://127.0.0.1:8000/v1), got {value!r}")
        return value


class RouterTrainingEntry(_Strict):
    """``train:`` of a support router: fine-tune it on these tickets on first use (cached).

    The fields of :class:`slm_agents.trained_router.RouterTraining`; ``data`` is relative to
    the spec file, the base model is the entry's ``model``.
    """

    data: str
    text_column: str = "text"
    label_column: str = "label"
    epochs: int = Field(2, ge=1, le=50)
    max_minutes: float = Field(10.0, gt=0)
    per_label: int | None = Field(None, ge=2)
    calibration: float = Field(0.1, gt=0.0, lt=1.0)
    target_accuracy: float = Field(0.99, gt=0.0, le=1.0)
    seed: int = 0


class AgentEntry(_Strict):
    kind: Literal[
        "llm", "classifier", "support-router", "extractor", "coder", "planner", "review",
        "cluster-router",
    ]  # fmt: skip
    model: str | None = None  # every kind but review needs one, or an endpoint
    endpoint: EndpointEntry | None = None  # an OpenAI-compatible endpoint serves the model
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
    tier: Literal["slm", "llm"] = "slm"  # for the job summary; planners default to "llm"
    # specialists (each only for its kind; see KIND_FIELDS)
    departments_file: str | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    temperature: float | None = Field(None, gt=0.0)
    schema_file: str | None = None
    adapter_dir: str | None = None
    hooks: dict[str, Literal["date", "amount"]] | None = None
    max_repairs: int | None = Field(None, ge=0, le=10)
    limits: dict[str, float] | None = None
    style: Literal["chat", "completion"] | None = None  # completion: a base model, e.g. gemma
    specialists: list[str] | None = Field(None, min_length=1)
    descriptions: dict[str, str] | None = None
    max_steps: int | None = Field(None, ge=1, le=16)
    compose: bool | None = None
    train: RouterTrainingEntry | None = None
    queue_file: str | None = None  # review: the JSONL queue (default: beside the job's output)
    centroids_file: str | None = None  # cluster-router: labels and centroids (JSON)

    @model_validator(mode="before")
    @classmethod
    def _planners_are_the_llm_tier(cls, data: Any) -> Any:
        llm = isinstance(data, dict) and (data.get("kind") == "planner" or "endpoint" in data)
        if llm and "tier" not in data:
            data = {**data, "tier": "llm"}
        return data

    @field_validator("endpoint")
    @classmethod
    def _endpoint_fits_the_kind(cls, value: EndpointEntry | None, info: Any) -> Any:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind not in ENDPOINT_KINDS:
            raise ValueError(f"applies to kinds {list(ENDPOINT_KINDS)}, not {kind!r}")
        if value is not None and info.data.get("model") is not None:
            raise ValueError(
                "an endpoint agent's model is endpoint.model; drop the agent's model field"
            )
        return value

    @field_validator(*LOCAL_MODEL_FIELDS)
    @classmethod
    def _local_model_only(cls, value: Any, info: Any) -> Any:
        if value and info.data.get("endpoint") is not None:
            raise ValueError(
                f"{info.field_name} needs a local model, not an endpoint (the server hosts the "
                "model; adapter: names an adapter it serves)"
            )
        return value

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> AgentEntry:
        for kind, names in KIND_FIELDS.items():
            stray = sorted(n for n in names if getattr(self, n) is not None and self.kind != kind)
            if stray:
                raise ValueError(f"{stray} only apply to kind {kind!r}, not {self.kind!r}")
        missing = [n for n in REQUIRED.get(self.kind, ()) if getattr(self, n) is None]
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {missing}")
        if self.model is None and self.endpoint is None and self.kind != "review":
            raise ValueError(f"kind {self.kind!r} needs a model (or an endpoint)")
        return self

    def options(self) -> dict[str, Any]:
        """This kind's own settings that were given (None means: the class default)."""
        return {
            n: getattr(self, n)
            for n in sorted(KIND_FIELDS.get(self.kind, ()))
            if getattr(self, n) is not None
        }


@dataclass(frozen=True)
class Hosting(HostingConfig):
    """Where agents run: in this process (default), or with ``ray: true`` as Ray actors hosted
    as the other fields say (every field of :class:`HostingConfig`, validated by it)."""

    ray: bool = False

    def config(self, address: str | None = None) -> HostingConfig:
        """The Ray hosting; ``address`` (when given) overrides the spec's."""
        values = {f.name: getattr(self, f.name) for f in dataclass_fields(HostingConfig)}
        if address:
            values["address"] = address
        return HostingConfig(**values)


class CascadeFlow(_Strict):
    small: str
    large: str
    # "calibrated": the threshold the small agent's training calibrated on held-out tickets
    threshold: float | str = 0.5
    answer_field: str | None = None  # the small agent's field the large agent's answer fills

    @field_validator("threshold")
    @classmethod
    def _a_share_or_calibrated(cls, value: float | str) -> float | str:
        if value == "calibrated" or (isinstance(value, float | int) and 0.0 <= value <= 1.0):
            return value
        raise ValueError(f"must be a number in [0, 1] or 'calibrated', got {value!r}")


class RouteCascade(_Strict):
    """A route's target that is a cascade: written ``{cascade: {small, large, threshold}}``.

    Validated from inside the ``cascade:`` wrapper, so an error reads
    ``flow.route.routes.LABEL.cascade.FIELD``, and dumped with it, so a spec round-trips.
    """

    small: str
    large: str
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    answer_field: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, RouteCascade):
            return data
        if not isinstance(data, dict) or set(data) != {"cascade"}:
            raise ValueError(
                "a route target is an agent name or {cascade: {small, large, threshold}}, "
                f"got {data!r}"
            )
        return data["cascade"]

    @field_validator("threshold", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value == "calibrated":
            raise ValueError(
                "'calibrated' applies to flow.cascade only (a support router trained by the "
                "spec); a route's cascade takes a number in [0, 1]"
            )
        return value

    @model_serializer(mode="wrap")
    def _wrapped(self, handler: Any) -> dict[str, Any]:
        return {"cascade": handler(self)}


def _target_kind(value: Any) -> str:
    return "agent" if isinstance(value, str) else "cascade"


RouteTarget = Annotated[
    Annotated[str, Tag("agent")] | Annotated[RouteCascade, Tag("cascade")],
    Discriminator(_target_kind),
]


class RouteFlow(_Strict):
    router: str
    routes: dict[str, RouteTarget] = Field(min_length=1)
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
            for label, target in self.route.routes.items():
                where = f"flow.route.routes.{label}"
                if isinstance(target, RouteCascade):
                    pairs += [(f"{where}.cascade.small", target.small),
                              (f"{where}.cascade.large", target.large)]  # fmt: skip
                else:
                    pairs.append((where, target))
            if self.route.default:
                pairs.append(("flow.route.default", self.route.default))
            return pairs
        return [(f"flow.pipeline[{i}]", name) for i, name in enumerate(self.pipeline or [])]


class InputSpec(_Strict):
    text_column: str = "text"
    id_column: str = "id"
    label_column: str | None = None
    label_field: str | None = None  # which field of a dict output to compare with the label


class TeamSpec(_Strict):
    name: str = Field(min_length=1)
    agents: dict[str, AgentEntry] = Field(min_length=1)
    flow: Flow
    input: InputSpec = Field(default_factory=InputSpec)
    # model -> {input_per_million, output_per_million} (USD), over slm_agents.pricing's defaults
    prices: dict[str, Price] = Field(default_factory=dict)
    hosting: Hosting = Field(default_factory=Hosting)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    source: Path | None = Field(None, exclude=True)

    def external_agents(self) -> list[str]:
        """The agents that send text off the premises (``slm_agents.privacy.is_external``)."""
        return [n for n, e in self.agents.items() if is_external(e.endpoint, self.privacy)]

    def build(
        self, address: str | None = None, review_queue: str | Path | None = None
    ) -> tuple[Any, Any]:
        """(Team of the named agents, the entry Agent the flow describes). Loads the models;
        trains a support router that asks for it and is not in the cache yet.

        ``address`` (a Ray address) hosts the agents on Ray, as ``hosting.ray: true`` does.
        ``review_queue``: the queue file of review agents that name none.
        """
        from slm_agents.human_review import HumanReview
        from slm_agents.patterns import Cascade, Pipeline, Route
        from slm_agents.team import Team

        base = self.source.parent if self.source else Path.cwd()
        entries = {name: self._trained(e, base) for name, e in self.agents.items()}
        agents = {name: self._build_agent(name, e, base, address) for name, e in entries.items()
                  if e.kind not in ("planner", "review")}  # fmt: skip
        for name, entry in entries.items():
            if entry.kind == "review":
                agents[name] = HumanReview(name, entry.queue_file or review_queue)
            if entry.kind == "planner":
                agents[name] = self._planner(name, entry, base, agents)
        team = Team(agents)
        flow = self.flow
        if flow.agent:
            return team, team[flow.agent]
        if flow.cascade:
            c = flow.cascade
            threshold = entries[c.small].threshold if c.threshold == "calibrated" else c.threshold
            return team, Cascade(team[c.small], team[c.large], threshold=threshold,
                                 answer_field=c.answer_field)  # fmt: skip
        if flow.route:
            r = flow.route
            routes = {label: _route_target(team, label, target)
                      for label, target in r.routes.items()}  # fmt: skip
            return team, Route(team[r.router], routes, default=r.default)
        return team, Pipeline([team[name] for name in flow.pipeline or []])

    @staticmethod
    def _trained(entry: AgentEntry, base: Path) -> AgentEntry:
        """A support router with ``train:`` as the trained, calibrated router it asks for."""
        if entry.train is None:
            return entry
        from slm_agents.trained_router import RouterTraining, trained_router

        settings = entry.train.model_dump() | {"data": str(base / entry.train.data),
                                               "base_model": entry.model}  # fmt: skip
        router = trained_router(RouterTraining(**settings), base / entry.departments_file)
        calibrated = {"model": str(router.path), "temperature": router.temperature,
                      "threshold": router.threshold, "train": None}  # fmt: skip
        given = {k: v for k, v in entry.model_dump(include={"temperature", "threshold"}).items()
                 if v is not None}  # fmt: skip
        return entry.model_copy(update=calibrated | given)

    def _build_agent(self, name: str, entry: AgentEntry, base: Path, address: str | None) -> Any:
        from slm_agents.runtime.spec import AgentSpec

        spec = AgentSpec(**self._spec_args(name, entry, base))
        if not (self.hosting.ray or address):
            return spec.build()
        from slm_agents.runtime import RayAgent

        return RayAgent(spec, hosting=self.hosting.config(address))

    def _planner(self, name: str, entry: AgentEntry, base: Path, agents: dict) -> Any:
        from slm_agents.pricing import PriceTable
        from slm_agents.runtime.spec import AgentSpec
        from slm_agents.specialists import Planner

        model = AgentSpec(**self._spec_args(name, entry, base) | {"kind": "llm"})._generator()
        options = entry.options()
        specialists = {n: agents[n] for n in options.pop("specialists")}
        return Planner(model, specialists, name=name, max_new_tokens=entry.max_new_tokens,
                       prices=PriceTable(self.prices), **options)  # fmt: skip

    def _spec_args(self, name: str, entry: AgentEntry, base: Path) -> dict[str, Any]:
        args = entry.model_dump(include=AGENT_SPEC_FIELDS)
        args["prices"] = dict(self.prices)
        if entry.labels_file:
            args["labels"] = _read_labels(base / entry.labels_file)
        args["adapters"] = {k: str(base / v) for k, v in entry.adapters.items()}
        if entry.endpoint is not None:
            args["endpoint"] = entry.endpoint.model_dump(exclude={"external"})
            if is_external(entry.endpoint, self.privacy) and self.privacy.redact:
                args["redact"] = list(self.privacy.redact)
        if entry.model is not None and (base / entry.model).exists():
            args["model"] = str(base / entry.model)
        options = entry.options()
        if "departments_file" in options:
            options["departments"] = str(base / options.pop("departments_file"))
        if "schema_file" in options:
            options["schema"] = _read_schema(base / options.pop("schema_file"))
        if "adapter_dir" in options:
            options["adapter"] = str(base / options.pop("adapter_dir"))
        if "centroids_file" in options:
            options["centroids"] = str(base / options.pop("centroids_file"))
        if entry.kind != "planner":
            args["options"] = options
        return {"name": name, **args}


def _route_target(team: Any, label: str, target: str | RouteCascade) -> Any:
    """The agent a route label sends to: a team member, or a Cascade named after the label."""
    from slm_agents.patterns import Cascade

    if isinstance(target, str):
        return team[target]
    return Cascade(team[target.small], team[target.large], threshold=target.threshold,
                   answer_field=target.answer_field, name=f"cascade:{label}")  # fmt: skip


AGENT_SPEC_FIELDS = {
    "kind", "model", "prompt", "system", "json_schema", "max_new_tokens", "labels", "adapter",
    "adapters", "quantize", "confidence", "device", "endpoint",
}  # fmt: skip


def load_team_spec(path: str | Path) -> TeamSpec:
    """Read and validate a team spec; every problem is a TeamSpecError naming file and field."""
    path = Path(path)
    spec = load_yaml_model(path, TeamSpec, "team spec", TeamSpecError, source=path)
    known = sorted(spec.agents)
    for field, name in spec.flow.names():
        if name not in spec.agents:
            raise TeamSpecError(f"{path}: {field}: no agent {name!r}; agents are {known}")
    if spec.flow.cascade:
        _check_cascade(path, spec)
    for label, target in (spec.flow.route.routes if spec.flow.route else {}).items():
        if isinstance(target, RouteCascade):
            _check_answer_field(path, spec, target, f"flow.route.routes.{label}.cascade")
    if spec.privacy.on_prem and spec.external_agents():
        where = ", ".join(
            f"agents.{n} (endpoint host {host_of(spec.agents[n].endpoint.base_url)!r})"
            for n in spec.external_agents()
        )
        raise TeamSpecError(
            f"{path}: privacy.on_prem is true, but {where} is external; list its host in "
            "privacy.local_hosts, set endpoint.external: false if it is on the premises, or "
            "drop on_prem"
        )
    for name, entry in spec.agents.items():
        if entry.train is not None and not (path.parent / entry.train.data).exists():
            raise TeamSpecError(f"{path}: agents.{name}.train.data: no file {entry.train.data}")
        served = entry.endpoint is not None  # the server hosts its adapters
        if entry.adapter is not None and not served and entry.adapter not in entry.adapters:
            raise TeamSpecError(
                f"{path}: agents.{name}.adapter: {entry.adapter!r} is not in its adapters "
                f"{sorted(entry.adapters)}"
            )
        for field in ("labels_file", "departments_file", "schema_file", "adapter_dir",
                      "centroids_file"):  # fmt: skip
            value = getattr(entry, field)
            if value and not (path.parent / value).exists():
                raise TeamSpecError(f"{path}: agents.{name}.{field}: no file {value}")
        if entry.kind == "cluster-router":
            _check_centroids(path, spec, name)
        for callee in entry.specialists or []:
            if callee not in spec.agents or spec.agents[callee].kind == "planner":
                callable_ = sorted(n for n, e in spec.agents.items() if e.kind != "planner")
                raise TeamSpecError(
                    f"{path}: agents.{name}.specialists: no specialist {callee!r}; "
                    f"it can call {callable_}"
                )
    return spec


def _check_centroids(path: Path, spec: TeamSpec, name: str) -> None:
    """A cluster router's file is readable, from its encoder, and a route serves every label."""
    from slm_agents.cluster_router import CentroidsError, read_centroids

    entry = spec.agents[name]
    try:
        centroids = read_centroids(path.parent / entry.centroids_file)
    except CentroidsError as exc:
        raise TeamSpecError(f"{path}: agents.{name}.centroids_file: {exc}") from exc
    if entry.model is not None and Path(entry.model).name != Path(centroids.model).name:
        raise TeamSpecError(
            f"{path}: agents.{name}.model: {entry.model!r}, but {entry.centroids_file} was "
            f"computed with {centroids.model!r}; their cosines would not compare"
        )
    route = spec.flow.route
    if route is not None and route.router == name and route.default is None:
        unserved = [label for label in centroids.labels if label not in route.routes]
        if unserved:
            raise TeamSpecError(
                f"{path}: flow.route.routes: agents.{name} labels requests {unserved}, which "
                "have no route; add them or a default"
            )


def _check_cascade(path: Path, spec: TeamSpec) -> None:
    """A calibrated threshold needs a router that calibrates; a router's dict answers need an
    ``answer_field`` for the large agent's answer, so every record has one shape."""
    c = spec.flow.cascade
    small = spec.agents[c.small]
    if c.threshold == "calibrated" and small.train is None:
        raise TeamSpecError(
            f"{path}: flow.cascade.threshold: 'calibrated' needs agents.{c.small}.train (a "
            "support router trained and calibrated on held-out tickets); or give a number"
        )
    _check_answer_field(path, spec, c, "flow.cascade")


def _check_answer_field(path: Path, spec: TeamSpec, c: Any, where: str) -> None:
    """A support router's dict answers need the field the large agent's answer fills."""
    if spec.agents[c.small].kind == "support-router" and c.answer_field is None:
        raise TeamSpecError(
            f"{path}: {where}.answer_field: agents.{c.small} answers with "
            "{intent, department, escalate}; name the field agents."
            f"{c.large}'s answer fills (e.g. department), so every record has one shape"
        )


def _read_schema(path: Path) -> dict[str, Any]:
    """A JSON schema from a .json or .yaml file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML reads JSON too
    if not isinstance(data, dict):
        raise TeamSpecError(f"{path}: a JSON schema must be an object")
    return data


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

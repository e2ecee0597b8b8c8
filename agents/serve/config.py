"""What ``slm-agents serve`` serves, and how Ray Serve deploys it: validated once, from YAML.

Example::

    request_timeout_s: 60
    models:
      - id: smollm2-135m-instruct          # the model id clients send (default: ``model``)
        model: smollm2-135m-instruct       # what CausalLM loads: bundled name, folder, hub id
        adapters: {support: adapters/support}   # base:adapter ids; loaded on first use
        adapters_dir: adapters/            # every sub-folder is an adapter too
        max_adapters_per_replica: 4        # the per-replica LRU of loaded adapters
        deployment: {replicas: 1, num_cpus: 1, max_ongoing_requests: 32,
                     max_queued_requests: 64, batch: {max_batch_size: 16, wait_s: 0.5}}
    teams:
      support-desk: {spec: examples/support_desk.yaml}    # served as model "team:support-desk"

Relative paths are read relative to the config file. Without a config every bundled causal
model is served with the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slm_agents.config_files import load_yaml_model


class ServeConfigError(ValueError):
    """The serve config is unusable; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Batching(_Strict):
    """Requests queued when the model is free share one forward pass (up to
    ``max_batch_size``); while fewer are queued than were in flight during the last batches,
    the batch waits up to ``wait_s`` for the clients just answered to send again."""

    max_batch_size: int = Field(16, ge=1, le=256)
    # Long enough for clients answered by the last batch to send their next request (a round
    # trip through the proxy and the ingress, over 0.1 s on two busy cores) before the next
    # batch starts. Only waited for requests the replica expects (a lone client never waits),
    # and a batch of a 135M model on CPU takes seconds. Lower it on a GPU.
    wait_s: float = Field(0.5, ge=0.0, le=5.0)


class Autoscaling(_Strict):
    """Ray Serve autoscaling bounds (replicas follow the ongoing requests per replica)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})"
            )
        return self


class Deployment(_Strict):
    """How one model or team is deployed: replicas, resources, batching, queue bounds.

    Past ``max_ongoing_requests`` per replica requests wait in a queue; past
    ``max_queued_requests`` the server answers 429 with ``Retry-After`` instead of piling up.
    """

    replicas: int = Field(1, ge=1)
    autoscaling: Autoscaling | None = None
    num_cpus: float = Field(1.0, ge=0.0)
    num_gpus: float = Field(0.0, ge=0.0)
    max_ongoing_requests: int = Field(32, ge=1)
    max_queued_requests: int = Field(64, ge=1)
    batch: Batching = Field(default_factory=Batching)

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.model_dump()
        else:
            options["num_replicas"] = self.replicas
        return options


class ModelEntry(_Strict):
    """One causal model served under ``id``, with the LoRA adapters it may load."""

    model: str
    id: str | None = None
    adapters: dict[str, str] = Field(default_factory=dict)
    adapters_dir: str | None = None
    max_adapters_per_replica: int = Field(4, ge=1)
    quantize: str | None = None
    device: str = "cpu"
    threads: int | None = Field(None, ge=1)  # torch threads per replica (default: its num_cpus)
    request_timeout_s: float | None = Field(None, gt=0.0)  # over the config's for this model
    deployment: Deployment = Field(default_factory=Deployment)

    @model_validator(mode="after")
    def _adapters_need_full_weights(self) -> ModelEntry:
        if self.quantize and (self.adapters or self.adapters_dir):
            raise ValueError(
                f"quantize: {self.quantize} cannot host LoRA adapters (they need the "
                "unquantized model); drop quantize or the adapters"
            )
        return self

    @property
    def torch_threads(self) -> int:
        return self.threads or max(1, int(self.deployment.num_cpus))

    @property
    def model_id(self) -> str:
        return self.id or self.model

    def model_location(self, base: Path) -> str:
        """``model`` as CausalLM takes it: a folder or file relative to the config if one is
        there, else the name as given (bundled name, hub id, absolute path)."""
        local = base / self.model
        return str(local) if local.exists() else self.model

    def adapter_paths(self, base: Path) -> dict[str, str]:
        """Adapter name -> folder: those listed, then every sub-folder of ``adapters_dir``."""
        found: dict[str, str] = {}
        if self.adapters_dir:
            folder = base / self.adapters_dir
            for child in sorted(folder.iterdir()):
                if (child / "adapter_config.json").exists():
                    found[child.name] = str(child)
        found.update({name: str(base / path) for name, path in self.adapters.items()})
        return found


class TeamEntry(_Strict):
    """A team spec served as the model ``team:<name>``."""

    spec: str
    deployment: Deployment = Field(default_factory=lambda: Deployment(num_cpus=0.5))


class ServeConfig(_Strict):
    models: list[ModelEntry] = Field(default_factory=list)
    teams: dict[str, TeamEntry] = Field(default_factory=dict)
    request_timeout_s: float = Field(60.0, gt=0.0)
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> ServeConfig:
        ids = [m.model_id for m in self.models]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"model ids must be unique, repeated: {doubled}")
        bad = [i for i in ids if ":" in i]
        if bad:
            raise ValueError(f"model ids cannot contain ':' (it separates adapters): {bad}")
        return self

    @property
    def base(self) -> Path:
        return (self.source.parent if self.source else Path.cwd()).resolve()


def default_config() -> ServeConfig:
    """Every installed bundled causal model, one replica each, default settings."""
    from slm_agents.models.sources import BUNDLED, bundled_path

    installed = [n for n, m in BUNDLED.items() if m.kind == "causal" and bundled_path(m)]
    if not installed:
        raise ServeConfigError("no bundled causal model is installed (make setup installs them)")
    return ServeConfig(models=[ModelEntry(model=name) for name in installed])


def load_serve_config(path: str | Path | None) -> ServeConfig:
    """Read and validate a serve config; ``None`` gives :func:`default_config`."""
    if path is None:
        return default_config()
    path = Path(path)
    config = load_yaml_model(path, ServeConfig, "serve config", ServeConfigError, source=path)
    for i, entry in enumerate(config.models):
        if entry.adapters_dir and not (config.base / entry.adapters_dir).is_dir():
            raise ServeConfigError(f"{path}: models[{i}].adapters_dir: no folder")
        for name, adapter in entry.adapters.items():
            if not (config.base / adapter / "adapter_config.json").exists():
                raise ServeConfigError(
                    f"{path}: models[{i}].adapters.{name}: {adapter} is not a PEFT adapter "
                    "folder (no adapter_config.json)"
                )
    for name, team in config.teams.items():
        if not (config.base / team.spec).exists():
            raise ServeConfigError(f"{path}: teams.{name}.spec: no file {team.spec}")
    if not config.models and not config.teams:
        raise ServeConfigError(f"{path}: serves nothing; give models or teams")
    return config

"""AgentSpec: everything needed to build an agent in any process, so a Ray actor can build its
own copy instead of receiving pickled model weights.

Models are cached per process by what defines them, so several agents on one base model (say,
with different LoRA adapters) share one copy of the weights. ``prices`` (model -> price per
million tokens, over the defaults of ``slm_agents.pricing``) travel with the spec, so an agent
prices its calls alike wherever it is built.

``endpoint`` (``{base_url, model, api_key_env, ...}``: the arguments of
:class:`~slm_agents.models.openai_endpoint.OpenAIEndpoint`) puts the agent on an
OpenAI-compatible HTTP endpoint instead of a local model: no weights are loaded, and the API key
is read from ``api_key_env`` in the process that builds the agent (a Ray actor's too).
``redact`` (kinds of personal data) puts a :class:`~slm_agents.privacy.RedactingGenerator` in
front of that endpoint: the team spec sets it for external agents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from slm_agents.agent import Agent, ClassifierAgent, LLMAgent
from slm_agents.pricing import Price, PriceTable

KINDS = ("llm", "classifier", "support-router", "extractor", "coder", "cluster-router")
ENDPOINT_KINDS = ("llm", "extractor", "coder")  # the kinds built on a TextGenerator
_MODELS: dict[str, Any] = {}


@dataclass
class AgentSpec:
    name: str
    kind: str  # "llm", "classifier" or a specialist: "support-router", "extractor", "coder"
    model: str | None = None  # bundled name, local path or hub id; None with an endpoint
    prompt: str = "{text}"
    system: str | None = None
    json_schema: dict[str, Any] | None = None
    max_new_tokens: int = 128
    adapter: str | None = None  # adapter this agent uses
    adapters: dict[str, str] = field(default_factory=dict)  # adapters to load: name -> path
    labels: list[str] | dict[str, str] | None = None  # zero-shot classifier labels
    confidence: str = "probability"  # classifiers: "probability" or "margin" (top minus second)
    options: dict[str, Any] = field(default_factory=dict)  # a specialist's own settings
    quantize: str | None = None
    device: str = "auto"
    batch_size: int = 16
    prices: dict[str, Price | dict[str, float]] = field(default_factory=dict)  # over the defaults
    endpoint: dict[str, Any] | None = None  # an OpenAI-compatible endpoint instead of a model
    redact: list[str] | None = None  # kinds to redact from what the endpoint is sent

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"agent {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.name:
            raise ValueError("agent name must not be empty")
        if self.redact is not None and self.endpoint is None:
            raise ValueError(f"agent {self.name!r}: redact applies to endpoint agents only")
        if self.endpoint is not None:
            self._check_endpoint()
        elif not self.model:
            raise ValueError(f"agent {self.name!r}: give a model (or an endpoint)")
        elif self.adapter is not None and self.adapter not in self.adapters:
            raise ValueError(
                f"agent {self.name!r} uses adapter {self.adapter!r} but adapters lists "
                f"{sorted(self.adapters)}"
            )
        self.price_table()  # a bad price fails here, not in an actor

    def _check_endpoint(self) -> None:
        """An endpoint serves the model: no local weights to name, load adapters onto or
        quantize (``adapter`` names an adapter the server hosts)."""
        if self.kind not in ENDPOINT_KINDS:
            raise ValueError(
                f"agent {self.name!r}: endpoint applies to kinds {ENDPOINT_KINDS}, "
                f"not {self.kind!r}"
            )
        if not isinstance(self.endpoint, dict) or not {"base_url", "model"} <= set(self.endpoint):
            raise ValueError(f"agent {self.name!r}: endpoint needs base_url and model")
        clash = [f for f in ("model", "adapters", "quantize") if getattr(self, f)]
        if clash:
            raise ValueError(f"agent {self.name!r}: {clash} do not apply with an endpoint")

    def price_table(self) -> PriceTable:
        return PriceTable(self.prices)

    def build(self) -> Agent:
        if self.kind == "classifier":
            return ClassifierAgent(
                self.name, self._classifier(), confidence=self.confidence, prices=self.price_table()
            )
        if self.kind in SPECIALISTS:
            return SPECIALISTS[self.kind](self)
        lm = self._generator()
        for adapter, path in self.adapters.items():
            if adapter not in lm.adapters:
                lm.load_adapter(path, adapter)
        return LLMAgent(
            self.name,
            lm,
            prompt=self.prompt,
            system=self.system,
            json_schema=self.json_schema,
            max_new_tokens=self.max_new_tokens,
            adapter=self.adapter,
            prices=self.price_table(),
        )

    def _generator(self) -> Any:
        """The agent's TextGenerator: its endpoint, else the local causal LM (both cached)."""
        if self.endpoint is None:
            return self._causal()
        from slm_agents.models import OpenAIEndpoint

        key = json.dumps(["endpoint", self.endpoint], sort_keys=True)
        if key not in _MODELS:
            _MODELS[key] = OpenAIEndpoint(**self.endpoint)
        if not self.redact:
            return _MODELS[key]
        from slm_agents.privacy import RedactingGenerator, Redactor

        guarded = json.dumps(["redacted", self.endpoint, self.redact], sort_keys=True)
        if guarded not in _MODELS:
            _MODELS[guarded] = RedactingGenerator(_MODELS[key], Redactor(self.redact))
        return _MODELS[guarded]

    def _causal(self) -> Any:
        from slm_agents.models import CausalLM

        key = json.dumps(["llm", self.model, self.quantize, self.device, self.batch_size])
        if key not in _MODELS:
            _MODELS[key] = CausalLM(
                self.model, device=self.device, quantize=self.quantize, batch_size=self.batch_size
            )
        return _MODELS[key]

    def _classifier(self) -> Any:
        from slm_agents.models import EncoderClassifier

        key = json.dumps(["classifier", self.model, self.labels, self.device], sort_keys=True)
        if key not in _MODELS:
            _MODELS[key] = EncoderClassifier(self.model, labels=self.labels, device=self.device)
        return _MODELS[key]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _support_router(spec: AgentSpec) -> Agent:
    from slm_agents.specialists import SupportRouter

    options = dict(spec.options)
    departments = options.pop("departments")
    return SupportRouter(
        spec._classifier(),
        departments,
        name=spec.name,
        confidence=spec.confidence,
        prices=spec.price_table(),
        **options,
    )


def _extractor(spec: AgentSpec) -> Agent:
    from slm_agents.specialists import Extractor

    options = dict(spec.options)
    return Extractor(
        options.pop("schema", spec.json_schema),
        spec._generator(),
        name=spec.name,
        max_new_tokens=spec.max_new_tokens,
        prices=spec.price_table(),
        **options,
    )


def _coder(spec: AgentSpec) -> Agent:
    from slm_agents.specialists import Coder

    return Coder(
        spec.name,
        spec._generator(),
        max_new_tokens=spec.max_new_tokens,
        prices=spec.price_table(),
        **spec.options,
    )


def _cluster_router(spec: AgentSpec) -> Agent:
    from slm_agents.cluster_router import ClusterRouter

    options = dict(spec.options)
    return ClusterRouter(spec.name, options.pop("centroids"), model=spec.model,
                         prices=spec.price_table(), **options)  # fmt: skip


SPECIALISTS = {"support-router": _support_router, "extractor": _extractor, "coder": _coder,
               "cluster-router": _cluster_router}  # fmt: skip

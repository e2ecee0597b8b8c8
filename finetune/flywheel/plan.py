"""What the flywheel decided for each cluster: the SLM that takes it over, or none.

S4 (select) and S5 (fine-tune) fill a :class:`ClusterPlan` per cluster; S6 (deploy) writes the
plans into a team spec, and a later run reads them back from ``clusters.json`` to retrain only
the clusters with new calls. Plain data, so it round-trips through JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Specialist:
    """The trained SLM of one cluster and how it scored on the cluster's held-out calls.

    ``agent`` is its team-spec agent entry (``kind``, ``model``, ``adapter``, ``json_schema``,
    ``prompt``, ``max_new_tokens``, ...), with paths relative to the flywheel's output folder.
    ``threshold`` is the Cascade threshold calibrated on the held-out calls: at or above it the
    SLM's answer is final, below it the call goes to the LLM tier.
    """

    candidate: str  # which candidate won, e.g. "encoder-classifier", "smollm2-135m-lora"
    agent: dict[str, Any]
    threshold: float
    agreement: float  # mean agreement with the LLM on the held-out calls, every call answered
    slm_share: float  # share of held-out calls the SLM keeps at the threshold
    agreement_at_threshold: float  # the cluster's agreement at the threshold (escalated = LLM)
    price_per_call: float  # the SLM's mean cost per call at the price table
    trained_on: list[str] = field(default_factory=list)  # ids of the calls it learned from
    train_seconds: float = 0.0
    model_version: str | None = None  # the MLflow registry version, when registered


@dataclass
class ClusterPlan:
    """One cluster's outcome: its name (the router's label), what was tried, what won."""

    cluster: str  # the cluster's name: the route label in the team spec
    cluster_id: int
    output_type: str  # classification, extraction or generation
    calls: int  # training calls in the cluster
    heldout_calls: int
    specialist: Specialist | None  # None: the cluster stays with the LLM tier
    why: str  # the reason in words and numbers ("no candidate kept 30% of calls at 0.95")
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every candidate's scores

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterPlan:
        data = dict(data)
        if data.get("specialist") is not None:
            data["specialist"] = Specialist(**data["specialist"])
        return cls(**data)

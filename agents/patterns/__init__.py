"""The four ways agents cooperate; each is an Agent built from Agents, so they compose."""

from slm_agents.patterns.cascade import Cascade, calibrate_threshold, evaluate_threshold
from slm_agents.patterns.pipeline import Pipeline, Stage
from slm_agents.patterns.routing import Route
from slm_agents.patterns.verification import ParallelVerify

__all__ = [
    "Cascade",
    "ParallelVerify",
    "Pipeline",
    "Route",
    "Stage",
    "calibrate_threshold",
    "evaluate_threshold",
]

"""The four ways agents cooperate; each is an Agent built from Agents, so they compose."""

from agents.patterns.cascade import Cascade, calibrate_threshold, evaluate_threshold
from agents.patterns.pipeline import Pipeline, Stage
from agents.patterns.routing import Route
from agents.patterns.verification import ParallelVerify

__all__ = [
    "Cascade",
    "ParallelVerify",
    "Pipeline",
    "Route",
    "Stage",
    "calibrate_threshold",
    "evaluate_threshold",
]

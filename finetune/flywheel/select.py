"""S4, select: per cluster, the cheapest SLM that agrees with the LLM often enough to take over.

For each candidate that serves the cluster's output type, cheapest first
(:func:`~slm_agents.finetune.flywheel.candidates.candidates_for`), within the cluster's time
budget:

1. train it on the cluster's training calls (S5, :func:`~.candidates.train_candidate`), into
   ``out_dir/<cluster>/<candidate>``;
2. build its agent from its team-spec entry, exactly as a team spec builds it (paths relative
   to ``out_dir``), and run it on the held-out calls;
3. score each call: its :func:`~slm_agents.finetune.flywheel.agreement.agreement` with the
   LLM's logged answer (a failed call 0) and its confidence (a failed call 0, none available
   1, as a Cascade treats them);
4. calibrate the Cascade threshold (:func:`~slm_agents.patterns.cascade.calibrate_threshold`)
   to the lowest share sent to the LLM at which the cluster's agreement reaches ``target``,
   an escalated call counting 1 (the LLM's answer is the reference);
5. it qualifies when it then keeps at least ``min_share`` of the calls (and ``target`` is
   reached at all). The first, cheapest, qualifying candidate wins and the rest are not tried.

A candidate after the first is only tried while at least half the budget is left. Clusters
with too few calls to learn from or to score on are not trained. Every candidate's scores and
every decision's reason, in numbers, go into the :class:`~.plan.ClusterPlan`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_agents.finetune.flywheel.agreement import agreement
from slm_agents.finetune.flywheel.calls import Call
from slm_agents.finetune.flywheel.candidates import (
    Candidate,
    Trained,
    candidates_for,
    slug,
    train_candidate,
)
from slm_agents.finetune.flywheel.cluster import Cluster
from slm_agents.finetune.flywheel.plan import ClusterPlan, Specialist
from slm_agents.pricing import PriceTable

log = logging.getLogger(__name__)

MIN_TRAIN_CALLS = 20  # fewer and a specialist has too little to learn from
MIN_HELDOUT_CALLS = 5  # fewer and its agreement is a guess
TRAIN_SHARE = 0.75  # of the budget left, what a training run may take (the rest: scoring)
MIN_TRAIN_SECONDS = 5.0  # less budget left than this and no further candidate is trained


def select_specialist(
    cluster: Cluster,
    train: Sequence[Call],
    heldout: Sequence[Call],
    out_dir: str | Path,
    *,
    budget_s: float,
    target: float = 0.95,
    min_share: float = 0.3,
    prices: Mapping[str, Any] | None = None,
    candidates: Sequence[Candidate] | None = None,
    track: bool = True,
    progress: bool = True,
    min_train: int = MIN_TRAIN_CALLS,
    min_heldout: int = MIN_HELDOUT_CALLS,
) -> ClusterPlan:
    """Train and score the candidates for ``cluster`` (module doc); the plan says what won.

    ``train`` and ``heldout`` are the cluster's calls; ``budget_s`` bounds the cluster's
    training and scoring (a training run gets :data:`TRAIN_SHARE` of what is left);
    ``prices`` (model -> price, over the defaults) order the candidates and price the
    specialist's calls; ``candidates`` replaces the default candidates.
    """
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s!r}")
    if not (0.0 < target <= 1.0 and 0.0 <= min_share <= 1.0):
        raise ValueError(
            f"target must be in (0, 1] and min_share in [0, 1], got {target}, {min_share}"
        )
    kind = cluster.output_type.kind
    plan = ClusterPlan(
        cluster=cluster.name,
        cluster_id=cluster.id,
        output_type=kind,
        calls=len(train),
        heldout_calls=len(heldout),
        specialist=None,
        why="",
    )
    if len(train) < min_train or len(heldout) < min_heldout:
        plan.why = (
            f"not trained: {len(train)} training and {len(heldout)} held-out calls; a "
            f"specialist needs at least {min_train} to learn from and {min_heldout} to be "
            "scored on"
        )
        _say(plan.cluster, plan.why, progress)
        return plan

    table = PriceTable(prices)
    if candidates is None:
        ordered = candidates_for(kind, train, table)
    else:
        ordered = candidates_for(kind, train, table, candidates)
    if not ordered:
        plan.why = f"no candidate serves {kind} calls"
        _say(plan.cluster, plan.why, progress)
        return plan

    out_dir = Path(out_dir)
    started = time.monotonic()
    for index, (candidate, _) in enumerate(ordered):
        left = budget_s - (time.monotonic() - started)
        skip = None
        if left < MIN_TRAIN_SECONDS:
            skip = f"not tried: {left:.0f} s of the {budget_s:.0f} s budget left"
        elif index > 0 and left < budget_s / 2:
            skip = (
                f"not tried: {left:.0f} s of the {budget_s:.0f} s budget left, under half "
                "(a pricier candidate needs at least half)"
            )
        if skip:
            plan.candidates.append(_unscored(candidate.name, skip))
            _say(plan.cluster, f"{candidate.name}: {skip}", progress)
            continue
        record, specialist = _try(
            candidate, cluster, kind, train, heldout, out_dir, left, target, min_share,
            prices, track, progress,
        )  # fmt: skip
        plan.candidates.append(record)
        _say(plan.cluster, f"{candidate.name}: {record['why']}", progress)
        if specialist is not None:
            plan.specialist = specialist
            plan.why = f"{candidate.name} {record['why']}"
            return plan

    plan.why = f"no candidate kept {min_share:.0%} of the calls at {target:.0%} agreement: " + (
        "; ".join(f"{c['candidate']} {c['why']}" for c in plan.candidates)
    )
    return plan


def _try(
    candidate: Candidate,
    cluster: Cluster,
    kind: str,
    train: Sequence[Call],
    heldout: Sequence[Call],
    out_dir: Path,
    left: float,
    target: float,
    min_share: float,
    prices: Mapping[str, Any] | None,
    track: bool,
    progress: bool,
) -> tuple[dict[str, Any], Specialist | None]:
    """Train and score one candidate: its record, and its Specialist when it qualifies."""
    folder = f"{slug(cluster.name)}/{candidate.name}"
    try:
        trained = train_candidate(
            candidate,
            kind,
            train,
            out_dir,
            folder,
            cluster=cluster.name,
            cluster_id=cluster.id,
            keys=cluster.output_type.keys,
            max_minutes=left * TRAIN_SHARE / 60,
            track=track,
            progress=progress,
        )
    except ValueError as exc:  # data the recipe refuses, a candidate unfit for the cluster
        return _unscored(candidate.name, f"not trained: {exc}"), None
    scores = score_heldout(trained.agent, kind, heldout, out_dir, target, prices)
    share, at_threshold = scores["slm_share"], scores["agreement_at_threshold"]
    reached = at_threshold >= target - 1e-9
    qualifies = reached and share >= min_share - 1e-9
    why = (
        f"keeps {share:.0%} of {len(heldout)} held-out calls at threshold "
        f"{scores['threshold']:.3f} ({at_threshold:.1%} agreement with the LLM there, target "
        f"{target:.0%}; {scores['agreement']:.1%} answering every call)"
    )
    if not reached:
        why += f"; {target:.0%} is not reached at any threshold"
    elif not qualifies:
        why += f"; under the {min_share:.0%} needed"
    record = {
        "candidate": candidate.name,
        **{k: scores[k] for k in ("agreement", "slm_share", "threshold", "agreement_at_threshold")},
        "price_per_call": scores["price_per_call"],
        "train_seconds": trained.seconds,
        "stopped": trained.stopped,
        "trained_calls": len(trained.trained_on),
        "dropped_calls": trained.dropped,
        "model_version": trained.model_version,
        "qualifies": qualifies,
        "why": why,
        "scores": scores["scores"],
    }
    return record, _specialist(candidate, trained, scores) if qualifies else None


def score_heldout(
    agent_entry: dict[str, Any],
    kind: str,
    heldout: Sequence[Call],
    out_dir: str | Path,
    target: float = 0.95,
    prices: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the agent of ``agent_entry`` on ``heldout`` and calibrate its Cascade threshold.

    Returns the threshold, the share kept (confidence at or above it), the agreement there and
    answering every call, the mean price per call, and per call its id, confidence and
    agreement (``scores``).
    """
    from slm_agents.patterns.cascade import calibrate_threshold, evaluate_threshold
    from slm_agents.result import Task

    with built_agent(agent_entry, out_dir, prices) as agent:
        results = agent.run_batch([Task(call.input, id=call.id) for call in heldout])
    agreements = [
        agreement(kind, result.output, call.output) if result.ok else 0.0
        for result, call in zip(results, heldout, strict=True)
    ]
    conf = [
        (1.0 if result.confidence is None else float(result.confidence)) if result.ok else 0.0
        for result in results
    ]
    llm = [1.0] * len(heldout)
    threshold = calibrate_threshold(conf, agreements, llm, target_accuracy=target)
    point = evaluate_threshold(conf, agreements, llm, threshold)
    n = len(heldout)
    return {
        "threshold": threshold,
        "slm_share": round(1.0 - point["escalated"], 6),
        "agreement_at_threshold": round(point["accuracy"], 6),
        "agreement": round(sum(agreements) / n, 6),
        "price_per_call": sum(result.cost for result in results) / n,
        "scores": [
            {"id": call.id, "confidence": round(c, 6), "agreement": round(a, 6)}
            for call, c, a in zip(heldout, conf, agreements, strict=True)
        ],
    }


@contextlib.contextmanager
def built_agent(
    agent_entry: dict[str, Any], out_dir: str | Path, prices: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """The agent a team spec in ``out_dir`` builds from ``agent_entry``, for one check.

    Models loaded only for it leave the process's model cache afterwards, and adapters it put
    on a model that stays cached are unloaded: a retrained folder at the same path is never
    answered by the weights it held before.
    """
    from slm_agents.runtime import spec as agent_specs
    from slm_agents.teamspec import TeamSpec

    cached = set(agent_specs._MODELS)  # the process cache of models (by what defines them)
    name = "candidate"
    team = TeamSpec(
        name="flywheel-check",
        agents={name: agent_entry},
        flow={"agent": name},
        prices=dict(prices or {}),
        source=Path(out_dir) / "team.yaml",
    )
    _, agent = team.build()
    try:
        yield agent
    finally:
        for key in set(agent_specs._MODELS) - cached:
            agent_specs._MODELS.pop(key, None)
        model = getattr(agent, "model", None)
        for adapter in agent_entry.get("adapters", {}):
            if adapter in getattr(model, "adapters", ()):
                model.unload_adapter(adapter)


def _specialist(candidate: Candidate, trained: Trained, scores: dict[str, Any]) -> Specialist:
    return Specialist(
        candidate=candidate.name,
        agent=trained.agent,
        threshold=scores["threshold"],
        agreement=scores["agreement"],
        slm_share=scores["slm_share"],
        agreement_at_threshold=scores["agreement_at_threshold"],
        price_per_call=scores["price_per_call"],
        trained_on=list(trained.trained_on),
        train_seconds=trained.seconds,
        model_version=trained.model_version,
    )


def _unscored(candidate: str, why: str) -> dict[str, Any]:
    return {
        "candidate": candidate,
        "agreement": None,
        "slm_share": None,
        "threshold": None,
        "agreement_at_threshold": None,
        "train_seconds": None,
        "qualifies": False,
        "why": why,
    }


def _say(cluster: str, line: str, progress: bool) -> None:
    message = f"[{cluster}] {line}"
    log.info(message)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)

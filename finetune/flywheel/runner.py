"""One flywheel run: logged calls in, a team spec out (S2 to S6), and what a later run starts from.

The output folder holds the team (``team.yaml``, ``router.json``, the trained specialists), the
clusters and every decision (``clusters.json``), the report (``report.md``, ``plots/``) and
the curated calls it learned from (``calls.jsonl``, redacted). Run again into the same folder
with new calls and the flywheel goes on from there: the new calls join the old ones, each goes
to the cluster it belongs to, only the clusters that got new training calls are trained again,
and every threshold is calibrated again on the latest held-out calls.

Time: the budget covers the whole run. Curating, embedding and clustering come first; what is
left is shared by the clusters to train, each getting an equal part of what remains when its
turn comes (so a cluster that finishes early leaves its time to the next).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_agents.finetune.flywheel.calls import Call, read_calls, write_calls
from slm_agents.finetune.flywheel.plan import ClusterPlan

STATE_FILE = "clusters.json"
CALLS_FILE = "calls.jsonl"
STATE_VERSION = 1
DEFAULT_BUDGET_MINUTES = 25.0
RESERVE_S = 60.0  # kept back from training for the team, the report and MLflow


class FlywheelError(ValueError):
    """The flywheel cannot run: bad settings, or an output folder it cannot go on from."""


@dataclass
class FlywheelRun:
    """What a run wrote and decided."""

    out_dir: Path
    plans: list[ClusterPlan]
    clustering: Any  # slm_agents.finetune.flywheel.cluster.Clustering
    counts: dict[str, int]  # curation counts
    trained: list[str]  # clusters trained in this run
    kept: list[str]  # clusters whose specialist (or absence of one) was kept from before
    estimate: dict[str, Any]  # SLM share and cost on the held-out calls (see _estimate)
    seconds: float
    run_id: str | None = None
    round: int = 1
    target: float = 0.95
    files: dict[str, Path] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # cluster -> training call ids
    curated: list[Call] = field(default_factory=list, repr=False)  # every call kept, redacted


def run_flywheel(
    calls: list[Call],
    out_dir: str | Path,
    *,
    budget_minutes: float = DEFAULT_BUDGET_MINUTES,
    target: float = 0.95,
    min_share: float = 0.3,
    llm_tier: dict[str, Any] | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    fresh: bool = False,
    track: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> FlywheelRun:
    """Curate, cluster, select and train per cluster, write the team and the report.

    ``llm_tier``: the team-spec agent entry of the LLM tier escalations go to (None: a
    loopback placeholder the team file says to replace). ``fresh`` ignores what ``out_dir``
    holds from an earlier run. Returns what was written and decided.
    """
    from slm_agents import tracking

    if budget_minutes <= 0:
        raise FlywheelError(f"budget_minutes must be > 0, got {budget_minutes}")
    if not 0.0 < target <= 1.0:
        raise FlywheelError(f"target agreement must be in (0, 1], got {target}")
    started = time.monotonic()
    deadline = started + budget_minutes * 60.0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = None if fresh else load_state(out)
    round_ = 1 if previous is None else previous["round"] + 1
    params = {"budget_minutes": budget_minutes, "target_agreement": target,
              "min_share": min_share, "holdout_fraction": holdout_fraction, "seed": seed,
              "round": round_, "calls_given": len(calls)}  # fmt: skip
    with tracking.run("flywheel", params=params if track else None) as run_id:
        result = _run(calls, out, previous, deadline, target=target, min_share=min_share,
                      llm_tier=llm_tier, holdout_fraction=holdout_fraction, seed=seed,
                      track=track, progress=progress, say=say)  # fmt: skip
        result.seconds = time.monotonic() - started
        result.run_id, result.round, result.target = run_id, round_, target
        _save(result, previous)
        if track:
            _log(result)
    return result


def _run(calls, out, previous, deadline, *, target, min_share, llm_tier, holdout_fraction,
         seed, track, progress, say) -> FlywheelRun:  # fmt: skip
    from slm_agents.finetune.flywheel.cluster import Clustering, cluster_calls, regroup
    from slm_agents.finetune.flywheel.curate import curate
    from slm_agents.finetune.flywheel.deploy import write_team
    from slm_agents.finetune.flywheel.embed import embed_texts
    from slm_agents.finetune.flywheel.select import select_specialist

    if previous is not None:
        calls = merge_calls(previous["calls"], calls)
    say(f"curating {len(calls)} calls (failed, invalid and near-duplicate out; redaction)")
    curated = curate(calls, holdout_fraction=holdout_fraction)
    counts = curated.counts()
    say(f"  {counts['train']} to learn from, {counts['heldout']} held out (the latest)")
    train, held = curated.train, curated.heldout
    if len(train) < 2:
        raise FlywheelError(f"{len(train)} call(s) left to learn from; the flywheel needs more")
    learned = train + held
    if all(c.id in curated.vectors for c in learned):  # embedded once, for near-duplicates
        import numpy

        vectors = numpy.stack([curated.vectors[c.id] for c in learned])
    else:
        say("embedding the calls with the bundled encoder")
        vectors = embed_texts([c.input for c in learned])
    train_vectors, held_vectors = vectors[: len(train)], vectors[len(train) :]
    costs = [c.cost or 0.0 for c in train]
    if previous is not None:
        clustering = regroup(Clustering.from_dict(previous["clustering"]),
                             [c.input for c in train], [c.output for c in train], costs,
                             vectors=train_vectors)  # fmt: skip
    else:
        clustering = cluster_calls([c.input for c in train], [c.output for c in train], costs,
                                   vectors=train_vectors, seed=seed)  # fmt: skip
    say(f"{clustering.k} cluster(s): {clustering.reason}")
    # Held-out calls join the cluster of their answers' shape, as training calls do: what a
    # specialist is scored and calibrated on is its own task (evaluate measures the router).
    held_of = clustering.assign(held_vectors, [c.output for c in held]) if held else []

    old_plans = {p.cluster: p for p in (previous or {}).get("plans", [])}
    seen = {c.id for c in (previous or {}).get("calls", [])}
    mine = {c.id: [train[i] for i in c.members] for c in clustering.clusters}
    theirs = {c.id: [h for h, k in zip(held, held_of, strict=True) if k == c.id]
              for c in clustering.clusters}  # fmt: skip
    kept = [c for c in clustering.clusters if c.name in old_plans
            and all(x.id in seen for x in mine[c.id] + theirs[c.id])]  # fmt: skip
    to_train = [c for c in clustering.clusters if c not in kept]
    plans = {}
    for cluster in kept:
        plans[cluster.id] = _recalibrated(old_plans[cluster.name], mine[cluster.id],
                                          theirs[cluster.id], out, target, min_share)  # fmt: skip
        say(f"  {cluster.name}: no new calls; kept. {_verdict(plans[cluster.id])}")
    for cluster in _training_order(to_train):
        left = max(deadline - time.monotonic() - RESERVE_S, 0.0)
        waiting = [c for c in to_train if c.id not in plans]
        share = left * _weight(cluster) / sum(_weight(c) for c in waiting)
        say(f"  {cluster.name} ({cluster.output_type.kind}, {len(mine[cluster.id])} calls): "
            f"selecting within {share / 60:.1f} min")  # fmt: skip
        plans[cluster.id] = select_specialist(
            cluster, mine[cluster.id], theirs[cluster.id], out, budget_s=max(share, 1.0),
            target=target, min_share=min_share, track=track, progress=progress,
        )  # fmt: skip
        say(f"    {_verdict(plans[cluster.id])}")
    ordered = [plans[c.id] for c in clustering.clusters]
    write_team(out, clustering, ordered, llm_tier=llm_tier, systems=_systems(clustering, train))
    result = FlywheelRun(
        out_dir=out, plans=ordered, clustering=clustering, counts=counts,
        trained=[c.name for c in to_train], kept=[c.name for c in kept],
        estimate=_estimate(clustering, ordered, held, held_of), seconds=0.0,
    )  # fmt: skip
    result.files = {"team": out / "team.yaml", "clusters": out / STATE_FILE,
                    "report": out / "report.md", "calls": out / CALLS_FILE}  # fmt: skip
    result.members = {c.name: [train[i].id for i in c.members] for c in clustering.clusters}
    result.curated = train + held
    return result


def _training_order(clusters: list[Any]) -> list[Any]:
    """Classification first (an encoder trains in a minute or two and leaves the rest of its
    time to the others), then by share of the LLM cost: where the money is."""
    return sorted(clusters, key=lambda c: (c.output_type.kind != "classification", -_weight(c)))


def _weight(cluster: Any) -> float:
    """A cluster's claim on the training time: its share of the LLM cost (else of the calls)."""
    share = cluster.cost_share if cluster.cost_share is not None else cluster.call_share
    return max(share, 0.01)


def _recalibrated(plan: ClusterPlan, train: list[Call], held: list[Call], out: Path,
                  target: float, min_share: float) -> ClusterPlan:  # fmt: skip
    """A kept specialist's threshold, calibrated again on every call of its cluster it did
    not learn from (the latest held-out calls, and earlier ones it never trained on)."""
    from dataclasses import replace

    from slm_agents.finetune.flywheel.select import MIN_HELDOUT_CALLS, score_heldout

    s = plan.specialist
    if s is None:
        return replace(plan, calls=len(train), heldout_calls=len(held))
    learned = set(s.trained_on)
    unseen = held + [c for c in train if c.id not in learned]
    if len(unseen) < MIN_HELDOUT_CALLS:
        return replace(plan, why=plan.why + f" (kept; {len(unseen)} unseen calls: too few to "
                       "calibrate again)")  # fmt: skip
    scores = score_heldout(s.agent, plan.output_type, unseen, out, target)
    reached = scores["agreement_at_threshold"] >= target - 1e-9
    if not (reached and scores["slm_share"] >= min_share - 1e-9):
        why = (
            f"kept model no longer qualifies on {len(unseen)} unseen calls: keeps "
            f"{scores['slm_share']:.0%} at {scores['agreement_at_threshold']:.1%} agreement"
        )
        return replace(plan, specialist=None, why=why, calls=len(train), heldout_calls=len(held))
    fresh = replace(s, threshold=scores["threshold"], slm_share=scores["slm_share"],
                    agreement=scores["agreement"],
                    agreement_at_threshold=scores["agreement_at_threshold"],
                    price_per_call=scores["price_per_call"])  # fmt: skip
    why = (
        f"kept from the previous run; recalibrated on {len(unseen)} unseen calls: keeps "
        f"{fresh.slm_share:.0%} at threshold {fresh.threshold:.3f}"
    )
    return replace(plan, specialist=fresh, why=why, calls=len(train), heldout_calls=len(held))


def _verdict(plan: ClusterPlan) -> str:
    s = plan.specialist
    if s is None:
        return f"stays with the LLM tier: {plan.why}"
    return (
        f"{s.candidate}: agreement {s.agreement:.3f} answering all; keeps {s.slm_share:.0%} "
        f"at threshold {s.threshold:.3f} (cluster agreement {s.agreement_at_threshold:.3f})"
    )


def _systems(clustering: Any, train: list[Call]) -> dict[str, str]:
    """Each cluster's most common logged system prompt (its LLM tier is sent the same)."""
    systems = {}
    for cluster in clustering.clusters:
        found = Counter(train[i].meta.get("system") for i in cluster.members)
        found.pop(None, None)
        if found:
            systems[cluster.name] = found.most_common(1)[0][0]
    return systems


def _estimate(clustering: Any, plans: list[ClusterPlan], held: list[Call], held_of: list[int]):
    """SLM share and cost on the held-out calls, from each specialist's calibration there.

    An estimate: the thresholds were chosen on these calls. ``slm-agents flywheel evaluate``
    scores the team on calls it never saw.
    """
    per_cluster, all_llm, team, slm_calls = {}, 0.0, 0.0, 0.0
    for cluster, plan in zip(clustering.clusters, plans, strict=True):
        mine = [c for c, k in zip(held, held_of, strict=True) if k == cluster.id]
        llm_cost = sum(c.cost or 0.0 for c in mine)
        s = plan.specialist
        kept = s.slm_share if s else 0.0
        cost = (len(mine) * s.price_per_call if s else 0.0) + (1.0 - kept) * llm_cost
        per_cluster[cluster.name] = {"all_llm": llm_cost, "team": cost, "calls": len(mine)}
        all_llm, team, slm_calls = all_llm + llm_cost, team + cost, slm_calls + kept * len(mine)
    return {
        "basis": "the held-out calls the thresholds were calibrated on",
        "calls": len(held),
        "slm_share": slm_calls / len(held) if held else None,
        "all_llm": all_llm,
        "team": team,
        "cost_ratio": team / all_llm if all_llm > 0 else None,
        "per_cluster": per_cluster,
    }


# ------------------------------------------------------------------ state
def load_state(out: Path) -> dict[str, Any] | None:
    """What an earlier run in ``out`` left (None when there was none)."""
    path = out / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != STATE_VERSION:
            raise FlywheelError(
                f"{path} is of version {state.get('version')!r}, this flywheel reads "
                f"{STATE_VERSION}: run with --fresh to start over"
            )
        state["plans"] = [ClusterPlan.from_dict(p) for p in state["plans"]]
        state["calls"] = read_calls(out / CALLS_FILE).calls
        return state
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise FlywheelError(
            f"{path} cannot be read ({exc}); run with --fresh to start over in {out}"
        ) from exc


def merge_calls(old: list[Call], new: list[Call]) -> list[Call]:
    """The earlier calls and the new ones; a call already learned from (same id) counts once."""
    seen = {c.id for c in old}
    return list(old) + [c for c in new if c.id not in seen]


def _save(result: FlywheelRun, previous: dict[str, Any] | None) -> None:
    from slm_agents.finetune.flywheel.report import write_report

    write_calls(result.out_dir / CALLS_FILE, result.curated)
    clustering = result.clustering.to_dict()
    state = {
        "version": STATE_VERSION,
        "round": result.round,
        "seconds": round(result.seconds, 1),
        "run_id": result.run_id,
        "counts": result.counts,
        "trained": result.trained,
        "kept": result.kept,
        "estimate": result.estimate,
        "clustering": clustering,
        "members": result.members,
        "plans": [p.to_dict() for p in result.plans],
        "history": [*(previous or {}).get("history", []), _summary(result)],
    }
    (result.out_dir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    cost = {k: result.estimate[k] for k in ("all_llm", "team", "per_cluster")}
    write_report(result.out_dir, clustering=clustering, plans=state["plans"],
                 counts=result.counts, cost=cost,
                 title=f"Flywheel run, round {result.round}",
                 target=result.target)  # fmt: skip


def _summary(result: FlywheelRun) -> dict[str, Any]:
    return {
        "round": result.round,
        "seconds": round(result.seconds, 1),
        "trained": result.trained,
        "kept": result.kept,
        "slm_share_estimate": result.estimate["slm_share"],
        "cost_ratio_estimate": result.estimate["cost_ratio"],
    }


def _log(result: FlywheelRun) -> None:
    from slm_agents import tracking

    est = result.estimate
    metrics = {"clusters": result.clustering.k, "seconds": result.seconds,
               "specialists": sum(p.specialist is not None for p in result.plans),
               "clusters_trained": len(result.trained), "clusters_kept": len(result.kept),
               **{f"curate_{k}": v for k, v in result.counts.items()}}  # fmt: skip
    for key in ("slm_share", "cost_ratio"):
        if est[key] is not None:
            metrics[f"heldout_{key}_estimate"] = est[key]
    tracking.log_metrics(metrics)
    for name in ("team.yaml", "router.json", STATE_FILE, "report.md"):
        if (result.out_dir / name).exists():
            tracking.log_artifact(result.out_dir / name)
    if (result.out_dir / "plots").is_dir():
        tracking.log_artifact(result.out_dir / "plots", "plots")

"""Score a flywheel's team on calls it never saw: how much moved to SLMs, at what agreement, cost.

Each held-out call is sent through the team (the router, its cluster's Cascade) and its answer
compared with the answer the LLM logged for it (:func:`~.agreement.agreement`). Escalated calls
go to the LLM tier: the one given, else the team's own. When no LLM tier is reachable (offline,
or the placeholder endpoint the flywheel writes without ``--llm-tier``), an escalated call is
answered with its logged answer, which then agrees by construction, and the result says so.

``cost_ratio`` is the team's cost (router, SLMs, and the LLM tier for escalated calls) over
sending every call to the LLM tier, both at the price table: the logged token counts priced as
the LLM tier's model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slm_agents.agent import Agent, merge, priced_step, split_valid
from slm_agents.finetune.flywheel.calls import Call
from slm_agents.result import Result, Task

REACH_TIMEOUT_S = 3.0
CHUNK = 64  # calls sent through the team at once (progress moves per chunk)


class LoggedAnswers(Agent):
    """The LLM tier replayed from the log: each call's logged answer, at its logged cost.

    Stands in for an LLM tier that cannot be reached, so a team is still scored end to end;
    a task whose text was never logged is an error Result naming it.
    """

    def __init__(self, name: str, calls: Sequence[Call], prices: Any, model: str):
        self.name, self.prices, self.model = name, prices, model
        self.calls = {c.input: c for c in calls}

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        valid, errors = split_valid(tasks, self.name)
        out = []
        for task in valid:
            start = time.time()
            call = self.calls.get(task.text)
            if call is None:
                out.append(Result(task.id, error=f"{self.name}: no logged answer for this text"))
                continue
            step = priced_step(self.name, self.model, self.prices, call.prompt_tokens,
                               call.completion_tokens, output=call.output, confidence=None,
                               kind="llm", start_s=start, end_s=time.time())  # fmt: skip
            out.append(Result(task.id, output=call.output, confidence=None, path=[step]))
        return merge(len(tasks), errors, out)


def evaluate_team(
    out_dir: str | Path,
    calls: list[Call],
    *,
    llm_tier: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``out_dir``'s team on ``calls`` and score it (module doc); a JSON-ready dict."""
    from tqdm.auto import tqdm

    from slm_agents.finetune.flywheel.agreement import agreement
    from slm_agents.finetune.flywheel.runner import FlywheelError, load_state
    from slm_agents.pricing import HOSTED_LLM, PriceTable
    from slm_agents.teamspec import load_team_spec

    out = Path(out_dir)
    state = load_state(out)
    if state is None:
        raise FlywheelError(f"{out} holds no flywheel run (no clusters.json): run it first")
    if not calls:
        raise FlywheelError("no calls to evaluate on")
    spec = load_team_spec(out / "team.yaml")
    llm_agents = [n for n, e in spec.agents.items() if e.tier == "llm"]
    if llm_tier is not None:
        spec = _with_llm_tier(spec, llm_agents, llm_tier)
    reachable, why = _reachable(spec, llm_agents)
    prices = PriceTable(spec.prices)
    llm_model = _llm_model(spec, llm_agents) or HOSTED_LLM
    started = time.monotonic()
    team, entry = spec.build()
    try:
        if not reachable:
            _replay(entry, set(llm_agents), calls, prices, llm_model)
        tasks = [Task(c.input, id=c.id) for c in calls]
        results: list[Result] = []
        bar = tqdm(total=len(tasks), desc="evaluate", unit="call", disable=not progress)
        for start in range(0, len(tasks), CHUNK):
            results += entry.run_batch(tasks[start : start + CHUNK])
            bar.update(len(tasks[start : start + CHUNK]))
        bar.close()
    finally:
        team.shutdown()
    kinds = _kinds_by_label(out, state)
    rows = []
    for call, result in zip(calls, results, strict=True):
        cluster = _cluster_of(result)
        by_slm = result.ok and not any(s.agent in llm_agents for s in result.path)
        score = agreement(_kind(call.output, kinds.get(cluster)), result.output, call.output)
        all_llm = prices.cost(llm_model, call.prompt_tokens, call.completion_tokens)
        rows.append({"cluster": cluster, "slm": by_slm, "agreement": score if result.ok else 0.0,
                     "cost": result.cost, "all_llm": all_llm, "error": result.error})  # fmt: skip
    summary = _summary(rows)
    summary["llm_tier"] = {
        "mode": "endpoint" if reachable else "logged answers",
        "why": why,
        "model": llm_model,
    }
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    slm = [r for r in rows if r["slm"]]
    total_llm = sum(r["all_llm"] for r in rows)
    clusters = []
    for name in sorted({r["cluster"] for r in rows}, key=str):
        mine = [r for r in rows if r["cluster"] == name]
        clusters.append({
            "name": name,
            "share": len(mine) / n,
            "slm_share": sum(r["slm"] for r in mine) / len(mine),
            "agreement": sum(r["agreement"] for r in mine) / len(mine),
            "n": len(mine),
        })  # fmt: skip
    return {
        "n": n,
        "slm_share": len(slm) / n,
        "agreement": sum(r["agreement"] for r in rows) / n,
        "agreement_slm_handled": (sum(r["agreement"] for r in slm) / len(slm)) if slm else None,
        "cost_ratio": sum(r["cost"] for r in rows) / total_llm if total_llm > 0 else None,
        "cost": sum(r["cost"] for r in rows),
        "all_llm_cost": total_llm,
        "errors": sum(r["error"] is not None for r in rows),
        "clusters": clusters,
    }


SHAPE_KINDS = {"short": "classification", "text": "generation"}  # json:* is extraction
FITS = {"extraction": ("json",), "classification": ("short",), "generation": ("short", "text")}


def _kind(logged: Any, routed: str | None) -> str:
    """How to compare an answer with ``logged``: as the cluster the router chose compares,
    when the logged answer fits that cluster's output type; else as the logged answer's own
    shape asks (a ticket the router sent to the receipts is still judged as a label)."""
    from slm_agents.finetune.flywheel.cluster import answer_shape

    shape = answer_shape(logged).split(":")[0]
    if routed in FITS and shape in FITS[routed]:
        return routed
    return "extraction" if shape == "json" else SHAPE_KINDS[shape]


def _kinds_by_label(out: Path, state: dict[str, Any]) -> dict[str, str]:
    """Route label (what the router answers) -> the cluster's output type."""
    import json

    from slm_agents.finetune.flywheel.deploy import ROUTER_FILE

    labels = json.loads((out / ROUTER_FILE).read_text(encoding="utf-8"))["labels"]
    clusters = state["clustering"]["clusters"]
    kinds = {p.cluster: p.output_type for p in state["plans"]}
    return {label: kinds.get(c["name"], c["output_type"]["kind"])
            for label, c in zip(labels, clusters, strict=True)}  # fmt: skip


def _cluster_of(result: Result) -> str | None:
    for step in result.path:
        if step.agent == "router":
            return step.output if isinstance(step.output, str) else None
    return None


def _with_llm_tier(spec: Any, names: list[str], llm_tier: dict[str, Any]) -> Any:
    """``spec`` with each LLM-tier agent taken from ``llm_tier``, keeping its cluster's system
    prompt and schema."""
    from slm_agents.teamspec import AgentEntry

    agents = dict(spec.agents)
    for name in names:
        keep = agents[name].model_dump(include={"system", "json_schema"}, exclude_none=True)
        agents[name] = AgentEntry(**{**llm_tier, **keep, "tier": "llm"})
    return spec.model_copy(update={"agents": agents})


def _reachable(spec: Any, names: list[str]) -> tuple[bool, str]:
    """Whether every LLM-tier endpoint answers ``GET /models`` (a local model always does)."""
    import httpx

    for name in names:
        endpoint = spec.agents[name].endpoint
        if endpoint is None:
            continue
        url = endpoint.base_url.rstrip("/") + "/models"
        try:
            httpx.get(url, timeout=REACH_TIMEOUT_S).raise_for_status()
        except httpx.HTTPError as exc:
            return False, f"{name}: {url} did not answer ({type(exc).__name__})"
    return True, "every LLM-tier agent answered"


def _llm_model(spec: Any, names: list[str]) -> str | None:
    for name in names:
        entry = spec.agents[name]
        return entry.endpoint.model if entry.endpoint is not None else entry.model
    return None


def _replay(entry: Any, llm_agents: set[str], calls: list[Call], prices: Any, model: str) -> None:
    """Put logged answers where the flow reaches an LLM-tier agent (a route, a cascade's large)."""
    from slm_agents.patterns import Cascade, Route

    def logged(agent: Any) -> Any:
        if isinstance(agent, Cascade):
            agent.large = logged(agent.large)
            return agent
        if getattr(agent, "name", None) in llm_agents:
            return LoggedAnswers(agent.name, calls, prices, model)
        return agent

    if isinstance(entry, Route):
        entry.routes = {label: logged(agent) for label, agent in entry.routes.items()}
    else:
        logged(entry)

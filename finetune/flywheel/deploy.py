"""S6 deploy: the flywheel's decisions as a team spec that ``slm-agents run`` runs.

:func:`write_team` writes two files into the flywheel's output folder:

- ``router.json``: the clusters' centroids (:func:`slm_agents.cluster_router.save_centroids`),
  so the team's ``router`` (kind ``cluster-router``) sends each request to the task it belongs
  to, embedded as the logged calls were;
- ``team.yaml``: ``router``; per cluster with a specialist, ``slm-<cluster>`` (the specialist's
  agent entry as trained) under a Cascade to ``llm-<cluster>`` at its calibrated threshold; the
  other clusters go to their ``llm-<cluster>`` directly. Each ``llm-<cluster>`` is the LLM-tier
  entry given, sent the cluster's logged system prompt and, when the specialist answers with a
  JSON schema, the same schema, so both tiers answer in one shape. Comments say where each
  threshold came from.

Without an LLM-tier entry the file gets a loopback placeholder (:data:`PLACEHOLDER_LLM_TIER`)
and a comment at its top saying to replace it. Cluster names become route labels and agent
names through :func:`slugify`. The written file is loaded back with
:func:`slm_agents.teamspec.load_team_spec` before ``write_team`` returns, so a team that would
not run is an error here, not at ``slm-agents run``.
"""

from __future__ import annotations

import copy
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from slm_agents.finetune.flywheel.plan import ClusterPlan, Specialist
from slm_agents.models.sources import DEFAULT_ENCODER
from slm_agents.pricing import HOSTED_LLM

TEAM_FILE = "team.yaml"
ROUTER_FILE = "router.json"
PLACEHOLDER_URL = "http://127.0.0.1:8000/v1"
PLACEHOLDER_LLM_TIER: dict[str, Any] = {
    "kind": "llm",
    "endpoint": {"base_url": PLACEHOLDER_URL, "model": HOSTED_LLM},
    "prompt": "{text}",
}


class DeployError(ValueError):
    """The plans cannot be written as a team; the message says which plan or field."""


def slugify(name: str) -> str:
    """``name`` as a route label and agent-name part: lower-case letters, digits and ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def write_team(
    out_dir: str | Path,
    clustering: Any,
    plans: Sequence[ClusterPlan],
    *,
    llm_tier: dict[str, Any] | None,
    name: str = "flywheel",
    systems: dict[str, str] | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> Path:
    """Write ``team.yaml`` and ``router.json`` into ``out_dir`` (module doc); returns the team.

    ``clustering``: the :class:`~slm_agents.finetune.flywheel.cluster.Clustering` the plans
    were made for (its centroids were embedded with ``encoder``); ``plans``: at most one per
    cluster, by ``cluster_id`` (a cluster without one goes to the LLM tier). ``llm_tier``: the
    team-spec agent entry of the LLM tier (e.g. ``{kind: llm, endpoint: {base_url, model,
    api_key_env}, prompt: "{text}"}``), None for the placeholder. ``systems``: cluster name
    -> the system prompt its logged calls were sent.
    """
    from slm_agents.cluster_router import save_centroids
    from slm_agents.teamspec import TeamSpecError, load_team_spec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clusters = list(clustering.clusters)
    by_id = _plans_by_cluster(clusters, plans)
    labels = _labels(clusters)
    if llm_tier is not None and not isinstance(llm_tier, dict):
        raise DeployError(
            f"llm_tier must be an agent entry (a dict), got {type(llm_tier).__name__}"
        )
    tier = copy.deepcopy(PLACEHOLDER_LLM_TIER if llm_tier is None else llm_tier)
    systems = systems or {}

    rows = [clustering.centroids[c.id] for c in clusters]
    save_centroids(out / ROUTER_FILE, [labels[c.id] for c in clusters], rows, encoder)
    agents: dict[str, dict[str, Any]] = {
        "router": {"kind": "cluster-router", "model": encoder, "centroids_file": ROUTER_FILE}
    }
    notes: dict[str, list[str]] = {"router": [_router_note(clustering, encoder)]}
    routes: dict[str, Any] = {}
    route_notes: dict[str, list[str]] = {}
    for cluster in clusters:
        label, plan = labels[cluster.id], by_id.get(cluster.id)
        specialist = plan.specialist if plan is not None else None
        system = systems.get(cluster.name, systems.get(label))
        small, large = f"slm-{label}", f"llm-{label}"
        if specialist is not None:
            agents[small] = copy.deepcopy(specialist.agent)
            notes[small] = [_specialist_note(small, cluster, plan)]
        agents[large] = _llm_agent(tier, system, specialist, out)
        notes[large] = [f"{large}: the LLM tier for cluster {cluster.name!r}"
                        + (", with its logged system prompt" if system else "")]  # fmt: skip
        if specialist is None:
            routes[label] = large
            route_notes[label] = [_llm_only_note(label, cluster, plan)]
            continue
        routes[label] = {"cascade": {"small": small, "large": large,
                                     "threshold": float(specialist.threshold)}}  # fmt: skip
        route_notes[label] = _threshold_notes(label, plan)

    path = out / TEAM_FILE
    text = _team_text(name, agents, notes, routes, route_notes, placeholder=llm_tier is None)
    path.write_text(text, encoding="utf-8")
    try:
        load_team_spec(path)
    except TeamSpecError as exc:
        raise DeployError(f"the team written to {path} does not load: {exc}") from exc
    return path


def _plans_by_cluster(clusters: list[Any], plans: Sequence[ClusterPlan]) -> dict[int, ClusterPlan]:
    ids = {c.id for c in clusters}
    by_id: dict[int, ClusterPlan] = {}
    for i, plan in enumerate(plans):
        if not isinstance(plan, ClusterPlan):
            raise DeployError(f"plans[{i}] is a {type(plan).__name__}, not a ClusterPlan")
        if plan.cluster_id not in ids:
            raise DeployError(
                f"plans[{i}] ({plan.cluster!r}) is for cluster id {plan.cluster_id}; "
                f"the clustering has ids {sorted(ids)}"
            )
        if plan.cluster_id in by_id:
            raise DeployError(f"plans[{i}]: cluster id {plan.cluster_id} has a plan already")
        if plan.specialist is not None and not isinstance(plan.specialist.agent, dict):
            raise DeployError(f"plans[{i}] ({plan.cluster!r}): specialist.agent is not a dict")
        by_id[plan.cluster_id] = plan
    return by_id


def _labels(clusters: list[Any]) -> dict[int, str]:
    """Cluster id -> a unique slug of its name (``cluster-ID`` when nothing is left of it)."""
    labels: dict[int, str] = {}
    for cluster in clusters:
        label = slugify(cluster.name) or f"cluster-{cluster.id}"
        if label in labels.values():
            label = f"{label}-{cluster.id}"
        labels[cluster.id] = label
    return labels


def _llm_agent(
    tier: dict[str, Any], system: str | None, specialist: Specialist | None, out: Path
) -> dict[str, Any]:
    """The LLM-tier entry for one cluster: its system prompt, the SLM's schema, ``tier: llm``."""
    entry = copy.deepcopy(tier)
    if system:
        entry["system"] = system
    schema = _schema_of(specialist.agent, out) if specialist is not None else None
    if schema is not None:
        entry["json_schema"] = schema
    entry["tier"] = "llm"
    return entry


def _schema_of(agent: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """The JSON schema an SLM entry answers with: inline, or its ``schema_file``."""
    if agent.get("json_schema") is not None:
        return copy.deepcopy(agent["json_schema"])
    if agent.get("schema_file"):
        schema = yaml.safe_load((out / agent["schema_file"]).read_text(encoding="utf-8"))
        if not isinstance(schema, dict):
            raise DeployError(f"{out / agent['schema_file']}: a JSON schema must be an object")
        return schema
    return None


def _router_note(clustering: Any, encoder: str) -> str:
    return (
        f"router: each request to the nearest of {len(clustering.clusters)} cluster "
        f"centroids ({ROUTER_FILE}, {encoder} embeddings); {clustering.reason}"
    )


def _specialist_note(small: str, cluster: Any, plan: ClusterPlan) -> str:
    s = plan.specialist
    version = f", registry version {s.model_version}" if s.model_version else ""
    return (
        f"{small}: {s.candidate} for cluster {cluster.name!r} ({plan.output_type}), trained on "
        f"{len(s.trained_on) or plan.calls} calls in {s.train_seconds:.0f} s{version}"
    )


def _threshold_notes(label: str, plan: ClusterPlan) -> list[str]:
    s = plan.specialist
    return [
        f"{label}: threshold {s.threshold:.4f}, calibrated on {plan.heldout_calls} held-out "
        f"calls: the SLM keeps {s.slm_share:.0%} of them, the rest go to the LLM tier; "
        f"agreement with the LLM {s.agreement_at_threshold:.3f} at the threshold "
        f"({s.agreement:.3f} with the SLM answering every call)"
    ]


def _llm_only_note(label: str, cluster: Any, plan: ClusterPlan | None) -> str:
    why = plan.why if plan is not None else "no plan was made for this cluster"
    return f"{label}: the LLM tier only ({cluster.size} calls): {why}"


def _team_text(
    name: str,
    agents: dict[str, dict[str, Any]],
    notes: dict[str, list[str]],
    routes: dict[str, Any],
    route_notes: dict[str, list[str]],
    *,
    placeholder: bool,
) -> str:
    """The YAML of the team, with comments above the agents and routes they explain."""
    head = [
        "Written by the flywheel (slm_agents.finetune.flywheel.deploy). A cluster router sends",
        "each request to its task; a task with a specialist SLM runs under a Cascade to the LLM",
        "tier, the others go to the LLM tier directly. Run: slm-agents run team.yaml --input",
        "REQUESTS --output results.jsonl",
    ]
    if placeholder:
        head += [
            "REPLACE the LLM tier: every llm-* agent's endpoint is a placeholder",
            f"({PLACEHOLDER_URL}, model {HOSTED_LLM!r}); give your LLM's endpoint (base_url,",
            "model, api_key_env), or rerun the flywheel with --llm-tier AGENT_YAML.",
        ]
    lines = [*_comment(head, 0), _dump({"name": name}, 0).rstrip(), "agents:"]
    for agent, entry in agents.items():
        lines += _comment(notes.get(agent, []), 2)
        lines.append(_dump({agent: entry}, 2).rstrip())
    lines += ["flow:", "  route:", "    router: router", "    routes:"]
    for label, target in routes.items():
        lines += _comment(route_notes.get(label, []), 6)
        lines.append(_dump({label: target}, 6, flow=isinstance(target, dict)).rstrip())
    lines += [
        "# Requests: a CSV or JSONL file with these columns (the text is what the LLM was sent).",
        "input: {text_column: text, id_column: id}",
    ]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (system prompts) as literal blocks, readable and exact."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and value == value.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _dump(data: dict[str, Any], indent: int, *, flow: bool = False) -> str:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=None if flow else False)  # fmt: skip
    return "".join(" " * indent + line for line in text.splitlines(keepends=True))


def _comment(lines: list[str], indent: int) -> list[str]:
    """Comment lines at ``indent``, wrapped at 100 characters."""
    width = max(100 - indent - 2, 40)
    wrapped = [w for line in lines for w in textwrap.wrap(line.replace("\n", " "), width)]
    return [" " * indent + "# " + line for line in wrapped]

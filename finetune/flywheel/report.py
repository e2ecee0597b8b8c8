"""A flywheel run as a page to read: ``report.md`` with three PNG plots beside it.

What a person deciding whether to deploy the new team needs on one page: which tasks were
found in the calls and what each costs, which of them moved to an SLM and at what agreement
with the LLM, what the team would cost against sending everything to the LLM tier, what
curation dropped, and how the number of tasks was chosen. Plain data in (the JSON the run
saves), so the page can be rewritten from ``clusters.json`` alone.

``cost`` is in USD over one set of calls (the run uses its held-out calls)::

    {"all_llm": 0.31,            # every call sent to the LLM tier, at the price table
     "team": 0.05,               # the new team: the SLMs, and the LLM tier for escalated calls
     "per_cluster": {"card-refund-account": {"all_llm": 0.25, "team": 0.02}, ...}}

``per_cluster`` is keyed by cluster name and may leave clusters out (or be absent); other keys
in it (``calls``) are ignored. Plots are drawn with matplotlib's Agg backend, imported inside
:func:`write_report`, so importing this module loads no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLOTS = {
    "shares": "shares.png",  # (a) each cluster's share of the calls and of the LLM cost
    "agreement": "agreement.png",  # (b) agreement against the share moved to the SLM
    "cost": "cost.png",  # (c) all-LLM cost against the new team's, per cluster
}
LLM_TIER = "stays with the LLM tier"
NAME_CHARS = 28  # cluster names are cut to this on the plots' axes


def write_report(
    out_dir: str | Path,
    *,
    clustering: dict[str, Any],
    plans: Sequence[dict[str, Any]],
    counts: dict[str, Any],
    cost: dict[str, Any] | None,
    title: str = "Flywheel run",
    target: float | None = 0.95,
) -> Path:
    """Write ``out_dir/report.md`` and its plots in ``out_dir/plots/``; return the md's path.

    ``clustering`` is ``Clustering.to_dict()`` (its ``labels`` and members are not used),
    ``plans`` are ``ClusterPlan.to_dict()`` dicts, ``counts`` is ``Curated.counts()``, ``cost``
    as in the module doc (None: no cost plot bars, a note instead). ``target`` is the agreement
    the run asked for, drawn as a line on the agreement plot (None: no line).
    """
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    rows = _rows(clustering, plans)
    cost = cost or {}
    _plot_shares(rows, plots / PLOTS["shares"])
    _plot_agreement(rows, plots / PLOTS["agreement"], target)
    _plot_cost(rows, cost, plots / PLOTS["cost"])
    text = _markdown(title, clustering, rows, counts, cost, target)
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ the rows
def _rows(clustering: dict[str, Any], plans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cluster, in the clustering's order, with its plan (matched by name, then
    by id); a plan without a cluster (an older run's) gets a row of its own."""
    by_name = {p.get("cluster"): p for p in plans}
    by_id = {p.get("cluster_id"): p for p in plans}
    rows, used = [], set()
    for cluster in clustering.get("clusters", []):
        plan = by_name.get(cluster.get("name")) or by_id.get(cluster.get("id"))
        if plan is not None:
            used.add(id(plan))
        rows.append(_row(cluster, plan))
    for plan in plans:
        if id(plan) not in used:
            rows.append(_row({"name": plan.get("cluster"), "id": plan.get("cluster_id")}, plan))
    return rows


def _row(cluster: dict[str, Any], plan: dict[str, Any] | None) -> dict[str, Any]:
    output_type = cluster.get("output_type") or {}
    plan = plan or {}
    return {
        "name": str(cluster.get("name") or plan.get("cluster") or f"cluster-{cluster.get('id')}"),
        "type": output_type.get("kind") or plan.get("output_type") or "?",
        "type_reason": output_type.get("reason"),
        "terms": cluster.get("terms") or [],
        "size": cluster.get("size", plan.get("calls")),
        "heldout": plan.get("heldout_calls"),
        "call_share": cluster.get("call_share"),
        "cost_share": cluster.get("cost_share"),
        "specialist": plan.get("specialist"),
        "why": plan.get("why") or ("no plan for this cluster" if not plan else ""),
        "candidates": plan.get("candidates") or [],
        "examples": cluster.get("examples") or [],
    }


# ------------------------------------------------------------------------------ plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _plot_shares(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.2))
    x = list(range(len(rows)))
    width = 0.38
    calls = [r["call_share"] or 0.0 for r in rows]
    costs = [r["cost_share"] for r in rows]
    ax.bar([i - width / 2 for i in x], calls, width, label="share of calls", color="#4c72b0")
    known = [(i, c) for i, c in zip(x, costs, strict=True) if c is not None]
    if known:
        ax.bar([i + width / 2 for i, _ in known], [c for _, c in known], width,
               label="share of LLM cost", color="#dd8452")  # fmt: skip
    if len(known) < len(rows):
        note = "cost share unknown for some clusters" if known else "cost share unknown"
        ax.text(0.01, 0.97, note, transform=ax.transAxes, ha="left", va="top", fontsize=8,
                color="grey")  # fmt: skip
    for i, (c, k) in enumerate(zip(calls, costs, strict=True)):
        ax.text(i - width / 2, c, f"{c:.0%}", ha="center", va="bottom", fontsize=8)
        if k is not None:
            ax.text(i + width / 2, k, f"{k:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [_short(r["name"]) for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.75, max(len(rows), 2) - 0.25)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("share")
    ax.set_title("Clusters: share of calls and of LLM cost")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def _plot_agreement(rows: list[dict[str, Any]], path: Path, target: float | None) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    moved = [r for r in rows if r["specialist"]]
    stayed = [r for r in rows if not r["specialist"]]
    for r in moved:
        s = r["specialist"]
        share, at = s.get("slm_share", 0.0), s.get("agreement_at_threshold", 0.0)
        ax.plot([share, 1.0], [at, s.get("agreement", at)], ":", color="#4c72b0", alpha=0.5)
        ax.scatter([share], [at], color="#4c72b0", zorder=3)
        ax.scatter([1.0], [s.get("agreement", at)], facecolors="none", edgecolors="#4c72b0")
        ax.annotate(_short(r["name"]), (share, at), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)  # fmt: skip
    if moved:
        ax.scatter([], [], color="#4c72b0", label="at its threshold (escalated calls: LLM)")
        ax.scatter([], [], facecolors="none", edgecolors="#4c72b0",
                   label="the SLM answering every call")  # fmt: skip
    if stayed:
        ax.scatter([0.0] * len(stayed), [1.0] * len(stayed), marker="x", color="grey",
                   label=LLM_TIER)  # fmt: skip
        for n, r in enumerate(stayed):
            ax.annotate(_short(r["name"]), (0.0, 1.0), textcoords="offset points",
                        xytext=(6, -12 - 11 * n), fontsize=8, color="grey")  # fmt: skip
    if target is not None:
        ax.axhline(target, linestyle="--", color="#c44e52", label=f"target agreement {target:g}")
    if not moved:
        ax.text(0.5, 0.5, "no cluster moved to an SLM", transform=ax.transAxes, ha="center",
                color="grey")  # fmt: skip
    lows = [
        r["specialist"].get(k, 1.0) for r in moved for k in ("agreement", "agreement_at_threshold")
    ]
    bottom = min([*lows, target if target is not None else 1.0, 0.9]) - 0.05
    ax.set_xlim(-0.05, 1.08)
    ax.set_ylim(max(bottom, 0.0), 1.02)
    ax.set_xlabel("share of the cluster's held-out calls the SLM keeps")
    ax.set_ylabel("agreement with the LLM's answers")
    ax.set_title("Agreement against share moved to the SLM")
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def _plot_cost(rows: list[dict[str, Any]], cost: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    groups = _cost_groups(rows, cost)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.2))
    x = list(range(len(groups)))
    width = 0.38
    before = [g[1] for g in groups]
    after = [g[2] for g in groups]
    ax.bar([i - width / 2 for i in x], [b or 0.0 for b in before], width,
           label="all calls to the LLM tier", color="#dd8452")  # fmt: skip
    ax.bar([i + width / 2 for i in x], [a or 0.0 for a in after], width,
           label="the new team", color="#55a868")  # fmt: skip
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        if b:
            ratio = f"{a / b:.0%}" if a is not None else "?"
            ax.text(i + width / 2, a or 0.0, ratio, ha="center", va="bottom", fontsize=8)
    if not any(before) and not any(after):
        ax.text(0.5, 0.5, "no cost recorded", transform=ax.transAxes, ha="center", color="grey")
        ax.set_ylim(0, 1)
    ax.set_xticks(x, [_short(g[0]) for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.75, max(len(groups), 2) - 0.25)
    ax.margins(y=0.12)
    ax.set_ylabel("USD (labels: the team's cost / all-LLM)")
    ax.set_title("Cost before and after")
    ax.legend(fontsize=8)
    _save(fig, path)


def _cost_groups(rows, cost) -> list[tuple[str, float | None, float | None]]:
    """(label, all-LLM, team) per cluster in ``cost["per_cluster"]``, then the total."""
    per = cost.get("per_cluster") or {}
    names = [r["name"] for r in rows if r["name"] in per] + [
        n for n in per if n not in {r["name"] for r in rows}
    ]
    groups = [(n, _number(per[n].get("all_llm")), _number(per[n].get("team"))) for n in names]
    groups.append(("total", _number(cost.get("all_llm")), _number(cost.get("team"))))
    return groups


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


# ------------------------------------------------------------------------------ markdown
def _markdown(title, clustering, rows, counts, cost, target) -> str:
    moved = [r for r in rows if r["specialist"]]
    lines = [f"# {title}", ""]
    n_calls = clustering.get("n_calls")
    lines.append(
        f"{len(rows)} cluster(s) found in {n_calls if n_calls is not None else '?'} calls; "
        f"{len(moved)} moved to an SLM, {len(rows) - len(moved)} {LLM_TIER}."
    )
    summary = _cost_sentence(cost)
    if summary:
        lines += ["", summary]
    lines += ["", "## Clusters", ""]
    lines += _table(
        ["cluster", "type", "calls", "held out", "share", "cost share", "SLM",
         "agreement (all)", "agreement (at threshold)", "SLM share", "threshold", "why"],
        [_cells(r) for r in rows],
    )  # fmt: skip
    if target is not None:
        lines += [
            "",
            f"Target agreement: {target:g}. *agreement (all)*: the SLM answering every held-out "
            "call; *at threshold*: the cluster's agreement when calls below the threshold go to "
            "the LLM tier; *SLM share*: the share the SLM keeps there.",
        ]
    lines += ["", f"![share of calls and of LLM cost per cluster](plots/{PLOTS['shares']})"]
    lines += ["", f"![agreement against share moved to the SLM](plots/{PLOTS['agreement']})"]
    lines += ["", "## Cost", ""]
    lines += _cost_table(rows, cost)
    lines += ["", f"![cost before and after, per cluster](plots/{PLOTS['cost']})"]
    lines += ["", "## Curation", ""]
    lines += _table(["count", "calls"], [[k, v] for k, v in (counts or {}).items()])
    lines += ["", "## How the number of clusters was chosen", ""]
    lines.append(_escape_text(clustering.get("reason") or "no reason recorded"))
    silhouettes = clustering.get("silhouettes") or {}
    if silhouettes:
        k = clustering.get("k")
        table = [
            [f"**{key}**" if str(key) == str(k) else key, f"{score:.3f}"]
            for key, score in sorted(silhouettes.items(), key=lambda kv: int(kv[0]))
        ]
        lines += ["", *_table(["k", "silhouette (cosine)"], table)]
    lines += ["", "## Cluster details", ""]
    for r in rows:
        lines += _details(r)
    return "\n".join(lines).rstrip() + "\n"


def _cells(r: dict[str, Any]) -> list[Any]:
    s = r["specialist"]
    return [
        r["name"],
        r["type"],
        r["size"] if r["size"] is not None else "",
        r["heldout"] if r["heldout"] is not None else "",
        _pct(r["call_share"]),
        _pct(r["cost_share"]),
        s.get("candidate", "?") if s else LLM_TIER,
        _fixed(s.get("agreement")) if s else "",
        _fixed(s.get("agreement_at_threshold")) if s else "",
        _pct(s.get("slm_share")) if s else "0%",
        _fixed(s.get("threshold")) if s else "",
        r["why"],
    ]


def _cost_sentence(cost: dict[str, Any]) -> str:
    before, after = _number(cost.get("all_llm")), _number(cost.get("team"))
    if before is None or after is None:
        return ""
    if before <= 0:
        return f"Cost: the new team ${after:.4f}; sending every call to the LLM tier costs nothing."
    return (
        f"Cost: ${after:.4f} with the new team against ${before:.4f} with every call sent to the "
        f"LLM tier ({after / before:.0%}, {1 - after / before:.0%} saved)."
    )


def _cost_table(rows, cost) -> list[str]:
    if not cost:
        return ["No cost given."]
    table = []
    for label, before, after in _cost_groups(rows, cost):
        ratio = f"{after / before:.0%}" if before and after is not None else ""
        table.append(
            [f"**{label}**" if label == "total" else label, _usd(before), _usd(after), ratio]
        )
    return _table(["cluster", "all LLM (USD)", "new team (USD)", "team / all LLM"], table)


def _details(r: dict[str, Any]) -> list[str]:
    lines = [f"### {_escape_text(r['name'])}", ""]
    if r["terms"]:
        lines.append(f"- top terms: {_escape_text(', '.join(r['terms']))}")
    if r["type_reason"]:
        lines.append(f"- output type {r['type']}: {_escape_text(r['type_reason'])}")
    lines.append(f"- decision: {_escape_text(r['why'] or LLM_TIER)}")
    for candidate in r["candidates"]:
        scalars = {k: v for k, v in candidate.items() if isinstance(v, str | int | float | bool)}
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
        lines.append(f"- candidate: {_escape_text(shown)}")
    for example in r["examples"][:2]:
        one_line = " ".join(str(example).split())[:160].replace("`", "'")
        lines.append(f"- example: `{one_line}`")
    return [*lines, ""]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _escape_text(text: str) -> str:
    return " ".join(str(text).split())


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pct(value: Any) -> str:
    return "" if _number(value) is None else f"{value:.1%}"


def _fixed(value: Any) -> str:
    return "" if _number(value) is None else f"{value:.3f}"


def _usd(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

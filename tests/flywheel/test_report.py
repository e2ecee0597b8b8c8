"""report.md and its three plots, from the plain data a flywheel run saves."""

from __future__ import annotations

import re

from slm_agents.finetune.flywheel.plan import ClusterPlan, Specialist
from slm_agents.finetune.flywheel.report import LLM_TIER, PLOTS, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _cluster(i: int, name: str, kind: str, size: int, share: float, cost_share) -> dict:
    return {
        "id": i,
        "name": name,
        "terms": name.split("-"),
        "size": size,
        "call_share": share,
        "cost_share": cost_share,
        "output_type": {
            "kind": kind,
            "reason": f"{kind} because of numbers",
            "n": size,
            "labels": [],
            "keys": [],
        },  # fmt: skip
        "examples": ["I still have not got my card | help", "TAN WOON YANN\nBOOK TA"],
        "members": list(range(size)),
    }


def _clustering(clusters: list[dict]) -> dict:
    return {
        "k": len(clusters),
        "reason": "k=3: the smallest k in 2..12 within 0.02 of the best silhouette",
        "method": "kmeans",
        "silhouettes": {"2": 0.31, "3": 0.42, "4": 0.41},
        "seed": 0,
        "n_calls": sum(c["size"] for c in clusters),
        "total_cost": 0.3,
        "clusters": clusters,
    }


def _specialist(share: float, agreement: float) -> Specialist:
    return Specialist(
        candidate="encoder-classifier",
        agent={"kind": "classifier", "model": "all-minilm-l6-v2"},
        threshold=0.62,
        agreement=agreement,
        slm_share=share,
        agreement_at_threshold=0.96,
        price_per_call=1e-7,
    )


CLUSTERS = [
    _cluster(0, "card-transfer-account", "classification", 240, 0.8, 0.7),
    _cluster(1, "jalan-sdn-bhd", "extraction", 45, 0.15, 0.25),
    _cluster(2, "return-list-def", "generation", 15, 0.05, 0.05),
]
COUNTS = {"calls": 330, "dropped_failed": 0, "dropped_invalid": 0,
          "dropped_near_duplicate": 30, "train": 240, "heldout": 60}  # fmt: skip
COST = {
    "all_llm": 0.30,
    "team": 0.12,
    "per_cluster": {
        "card-transfer-account": {"all_llm": 0.21, "team": 0.03, "calls": 48},
        "jalan-sdn-bhd": {"all_llm": 0.075, "team": 0.075, "calls": 9},
        "return-list-def": {"all_llm": 0.015, "team": 0.015, "calls": 3},
    },
}


def _plan(cluster: dict, specialist: Specialist | None, why: str) -> dict:
    return ClusterPlan(
        cluster=cluster["name"],
        cluster_id=cluster["id"],
        output_type=cluster["output_type"]["kind"],
        calls=cluster["size"],
        heldout_calls=cluster["size"] // 5,
        specialist=specialist,
        why=why,
        candidates=[{"candidate": "encoder-classifier", "agreement": 0.91, "slm_share": 0.8}],
    ).to_dict()


def _check_written(path, out) -> str:
    assert path == out / "report.md"
    text = path.read_text(encoding="utf-8")
    for name in PLOTS.values():
        png = out / "plots" / name
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 2000
        assert f"](plots/{name})" in text
    return text


def test_report_with_a_specialist(tmp_path):
    plans = [
        _plan(CLUSTERS[0], _specialist(0.8, 0.91), "kept 80% of calls at 0.96"),
        _plan(CLUSTERS[1], None, "no candidate kept 30% of calls at 0.95"),
        _plan(CLUSTERS[2], None, "generation stays with the LLM tier"),
    ]
    path = write_report(tmp_path, clustering=_clustering(CLUSTERS), plans=plans, counts=COUNTS,
                        cost=COST, title="Round 1")  # fmt: skip
    text = _check_written(path, tmp_path)
    assert text.startswith("# Round 1\n")
    row = next(line for line in text.splitlines() if line.startswith("| card-transfer-account"))
    assert "encoder-classifier" in row and "0.910" in row and "80.0%" in row and "0.620" in row
    assert text.count(LLM_TIER) >= 2
    assert "| dropped_near_duplicate | 30 |" in text
    assert "| **3** | 0.420 |" in text and "within 0.02 of the best" in text
    assert "$0.1200 with the new team against $0.3000" in text and "60% saved" in text
    assert re.search(r"\| \*\*total\*\* \| 0\.3000 \| 0\.1200 \| 40% \|", text)


def test_report_without_specialists_one_cluster_no_costs(tmp_path):
    only = [_cluster(0, "card-transfer-account", "classification", 40, 1.0, None)]
    plans = [_plan(only[0], None, "too few calls to train on")]
    path = write_report(tmp_path / "out", clustering=_clustering(only), plans=plans,
                        counts={"calls": 40}, cost=None, target=None)  # fmt: skip
    text = _check_written(path, tmp_path / "out")
    assert "| card-transfer-account | classification | 40 | 8 | 100.0% |  | " + LLM_TIER in text
    assert "0 moved to an SLM, 1 stays with the LLM tier" in text
    assert "No cost given." in text

"""Team specs: bad fields are named with their allowed values; a good spec builds a real team."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_agents.teamspec import TeamSpecError, load_team_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOOD = """
name: desk
agents:
  router: {kind: classifier, model: all-minilm-l6-v2, labels_file: departments.yaml}
  backup: {kind: classifier, model: all-minilm-l6-v2, labels: [cards, transfers]}
flow:
  cascade: {small: router, large: backup, threshold: 0.3}
input: {text_column: text, label_column: department}
"""
CASCADE = "cascade: {small: router, large: backup, threshold: 0.3}"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "departments.yaml").write_text(
        (EXAMPLES / "banking77_departments.yaml").read_text()
    )
    path = tmp_path / "team.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("kind: classifier, model", "kind: classifer, model"),
         "agents.router.kind: Input should be 'llm', 'classifier', 'support-router'"),
        (("small: router", "small: rooter"),
         "flow.cascade.small: no agent 'rooter'; agents are ['backup', 'router']"),
        (("threshold: 0.3", "threshold: 3"),
         "flow.cascade.threshold: Value error, must be a number in [0, 1] or 'calibrated', "
         "got 3.0"),
        (("input: {", "input: {colour: red, "), "input.colour: Extra inputs are not permitted"),
        ((CASCADE, "agent: router\n  pipeline: [router]"),
         "give exactly one of agent, cascade, route, pipeline"),
        (("labels_file: departments.yaml", "labels_file: nowhere.yaml"),
         "agents.router.labels_file: no file nowhere.yaml"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_field(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(TeamSpecError, match="team.yaml: ") as error:
        load_team_spec(path)
    assert message in str(error.value)


ROUTED = "route: {router: router, routes: {cards: {cascade: {small: backup, large: router, " \
    "threshold: 0.4}}, transfers: backup}}"  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("small: backup", "small: bakup"),
         "flow.route.routes.cards.cascade.small: no agent 'bakup'; agents are ['backup', "),
        (("threshold: 0.4", "threshold: calibrated"),
         "flow.route.routes.cards.cascade.threshold: Value error, 'calibrated' applies to "
         "flow.cascade only"),
        (("{cascade: {small", "{cascades: {small"),
         "flow.route.routes.cards.cascade: Value error, a route target is an agent name or "
         "{cascade: {small, large, threshold}}"),
    ],
)  # fmt: skip
def test_a_route_to_a_cascade_names_the_field_of_a_bad_one(tmp_path, change, message):
    good = load_team_spec(write(tmp_path, GOOD.replace(CASCADE, ROUTED)))
    cards = good.flow.route.routes["cards"]
    assert (cards.small, cards.large, cards.threshold) == ("backup", "router", 0.4)
    assert good.model_dump()["flow"]["route"]["routes"]["cards"]["cascade"]["small"] == "backup"
    with pytest.raises(TeamSpecError) as error:
        load_team_spec(write(tmp_path, GOOD.replace(CASCADE, ROUTED.replace(*change))))
    assert message in str(error.value)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(TeamSpecError, match="no such file"):
        load_team_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [unclosed")
    with pytest.raises(TeamSpecError, match="bad.yaml: not readable YAML"):
        load_team_spec(bad)


def test_a_good_spec_builds_a_team_that_routes_real_tickets(tmp_path):
    spec = load_team_spec(write(tmp_path, GOOD))
    team, entry = spec.build()
    assert sorted(team) == ["backup", "router"]
    [result] = entry.run_batch(["I lost my card yesterday, please block it"])
    assert result.ok and result.path[0].agent == "router"
    assert result.output in {"cards", "transfers"}  # either tier answered with its own labels
    assert spec.input.label_column == "department"


def test_coder_style_is_a_coder_option_with_named_choices(tmp_path):
    coder = "coder: {kind: coder, model: gemma-3-270m, style: completion, max_repairs: 1}"
    spec = load_team_spec(write(tmp_path, GOOD.replace("backup: {", coder + "\n  backup: {")))
    assert spec.agents["coder"].options() == {"max_repairs": 1, "style": "completion"}
    with pytest.raises(TeamSpecError, match="Input should be 'chat' or 'completion'"):
        load_team_spec(
            write(
                tmp_path,
                GOOD.replace("backup: {", coder.replace("completion", "fim") + "\n  backup: {"),
            )
        )
    with pytest.raises(TeamSpecError, match=r"\['style'\] only apply to kind 'coder'"):
        load_team_spec(
            write(tmp_path, GOOD.replace("labels: [cards", "style: chat, labels: [cards"))
        )


def test_hosting_is_a_hosting_config_plus_ray_and_bad_values_are_named(tmp_path):
    from slm_agents.runtime import HostingConfig

    hosting = "hosting: {ray: true, num_cpus: 0.5, replicas: 2, max_pending: 8, when_full: error}"
    spec = load_team_spec(write(tmp_path, GOOD + hosting + "\n"))
    assert spec.hosting.ray
    expected = HostingConfig(num_cpus=0.5, replicas=2, max_pending=8, when_full="error")
    assert spec.hosting.config() == expected
    assert spec.hosting.config("10.0.0.1:6379").address == "10.0.0.1:6379"  # --address wins
    for bad, message in [
        ("hosting: {replicas: 0}", "hosting: Value error, replicas must be an integer >= 1, got 0"),
        ("hosting: {when_full: drop}", "hosting.when_full: Input should be 'wait' or 'error'"),
        ("hosting: {gpus: 1}", "hosting.gpus: Unexpected keyword argument"),
    ]:
        with pytest.raises(TeamSpecError) as error:
            load_team_spec(write(tmp_path, GOOD + bad + "\n"))
        assert message in str(error.value)


def test_bad_prices_are_named_before_anything_loads(tmp_path):
    for bad, message in [
        ("prices: {all-minilm-l6-v2: {input: 1}}",
         "prices.all-minilm-l6-v2.input_per_million: Field required"),
        ("prices: {all-minilm-l6-v2: {input_per_million: -1, output_per_million: 0}}",
         "prices.all-minilm-l6-v2: Value error, prices must be >= 0"),
    ]:  # fmt: skip
        with pytest.raises(TeamSpecError) as error:
            load_team_spec(write(tmp_path, GOOD + bad + "\n"))
        assert message in str(error.value)


PRICED = """
name: priced
agents:
  router: {kind: classifier, model: all-minilm-l6-v2, labels_file: departments.yaml}
  writer: {kind: llm, tier: llm, model: smollm2-135m-instruct, max_new_tokens: 4,
           prompt: "Name the department in one word: {text}"}
flow:
  cascade: {small: router, large: writer, threshold: 0.99}
input: {text_column: text, id_column: id}
prices:
  all-minilm-l6-v2: {input_per_million: 1000, output_per_million: 1000}
  smollm2-135m-instruct: {input_per_million: 1000, output_per_million: 1000}
"""


def test_the_team_specs_prices_price_every_agent_of_the_job(tmp_path):
    """Every token of the job costs the spec's 1000 USD per million, not the default table's."""
    from slm_agents.job import run_job

    tickets = EXAMPLES / "data" / "support_tickets.csv"
    out = tmp_path / "results.jsonl"
    summary = run_job(write(tmp_path, PRICED), tickets, out, limit=3, track=False, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    assert any(set(r["agents"]) == {"router", "writer"} for r in rows)  # both models priced
    for row in rows:
        assert row["tokens"] > 0
        assert row["cost_usd"] == pytest.approx(row["tokens"] * 1000 / 1e6)
        assert sum(row["cost_by_agent"].values()) == pytest.approx(row["cost_usd"])
    assert summary.cost_usd == pytest.approx(summary.tokens * 1000 / 1e6)

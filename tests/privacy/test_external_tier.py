"""End to end: tickets carrying personal data go through ``slm-agents run`` to an external LLM
tier (a recording OpenAI-compatible server on 127.0.0.1, marked ``external: true``). None of the
inserted values reaches the server or the MLflow store; the results file has them back."""

from __future__ import annotations

import csv
import json
import textwrap

import openai_fault_server
import pytest
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.datasets import data_dir

fault_server = openai_fault_server.fault_server  # the fixture: echoes the prompt back
runner = CliRunner()
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR"]


def tickets_with_personal_data(n: int) -> list[tuple[str, list[str]]]:
    """(ticket text, the values put into it): BANKING77 tickets with Faker's people in them."""
    from faker import Faker

    with (data_dir() / "banking77" / "test.csv").open(encoding="utf-8") as f:
        texts = [row["text"] for row, _ in zip(csv.DictReader(f), range(n), strict=False)]
    out = []
    for i, text in enumerate(texts):
        fake = Faker(LOCALES[i % len(LOCALES)])
        fake.seed_instance(i)
        values = {
            "name": fake.name(),
            "email": fake.email(),
            "phone": fake.phone_number(),
            "card": fake.credit_card_number(),
            "iban": fake.iban(),
            "address": fake.address().replace("\n", ", "),
            "dob": fake.date_of_birth().strftime("%d/%m/%Y"),
        }
        ticket = (
            f"Hi, I'm {values['name']}. {text} Reach me at {values['email']} or "
            f"{values['phone']}. It is about card {values['card']}; refunds go to "
            f"{values['iban']}. I live at {values['address']}, date of birth {values['dob']}."
        )
        out.append((ticket, list(values.values())))
    return out


def spec(tmp_path, base_url: str, privacy: str = "", external: str = "true") -> str:
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: private-desk
        agents:
          llm-tier:
            kind: llm
            endpoint: {{base_url: "{base_url}", model: gpt-4o-mini, external: {external}}}
            prompt: "Answer this customer: {{text}}"
        flow: {{agent: llm-tier}}
        {privacy}
        """)
    )
    return str(path)


def forms(value: str) -> list[bytes]:
    """The ways a value can sit in a file: UTF-8, and JSON-escaped (``M\\u00fcller``)."""
    return list({value.encode(), json.dumps(value).strip('"').encode()})


def stored_files(tmp_path) -> list[bytes]:
    store = [tmp_path / "mlflow.db", *(tmp_path / "mlartifacts").rglob("*")]
    return [p.read_bytes() for p in store if p.is_file()]


def run(tmp_path, team: str, tickets, printed: list[str] | None = None) -> list[dict]:
    data = tmp_path / "tickets.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([f"t{i}", text] for i, (text, _) in enumerate(tickets))
    out = tmp_path / "results.jsonl"
    result = runner.invoke(app, ["run", team, "--input", str(data), "--output", str(out)])
    assert result.exit_code == 0, result.output
    if printed is not None:
        printed.append(result.output)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_no_inserted_value_reaches_the_external_tier_or_the_store(
    fault_server, tmp_path, mlflow_store, caplog
):
    import logging

    import mlflow

    caplog.set_level(logging.DEBUG)  # every logger, at its most talkative
    tickets = tickets_with_personal_data(8)
    printed: list[str] = []
    rows = run(tmp_path, spec(tmp_path, fault_server.base_url), tickets, printed)
    logged = caplog.text + printed[0]
    assert caplog.records and printed[0]  # something was logged and printed

    sent = [json.dumps(p.body, ensure_ascii=False) for p in fault_server.posts()]
    assert len(sent) == len(tickets)
    stored = stored_files(tmp_path)
    assert stored and any(b"<PERSON_1>" in blob for blob in stored)  # traces were written
    for (_, values), row in zip(tickets, sorted(rows, key=lambda r: int(r["id"][1:])), strict=True):
        for value in values:
            assert not [body for body in sent if value in body], f"sent: {value!r}"
            assert not [b for b in stored for form in forms(value) if form in b], value
            assert value not in logged, f"logged or printed: {value!r}"
            assert value in row["output"], (value, row["output"])  # restored for the user
        assert row["error"] is None and row["agents"] == ["redact", "llm-tier"]
    assert all("<EMAIL_1>" in body and "<CARD_1>" in body for body in sent)

    run_id = (tmp_path / "results.jsonl.mlflow-run").read_text()
    trace = mlflow.search_traces(run_id=run_id, return_type="list")[0]
    redact = next(s for s in trace.data.spans if s.name == "redact")
    assert redact.outputs["entities"] == 7
    assert set(redact.outputs["kinds"]) == {"PERSON", "EMAIL", "PHONE", "CARD", "IBAN",
                                            "ADDRESS", "DOB"}  # fmt: skip


def test_store_raw_keeps_the_values_in_the_store_and_still_redacts_what_leaves(
    fault_server, tmp_path, mlflow_store
):
    tickets = tickets_with_personal_data(2)
    run(tmp_path, spec(tmp_path, fault_server.base_url, "privacy: {store_raw: true}"), tickets)
    email = tickets[0][1][1]
    assert any(form in blob for blob in stored_files(tmp_path) for form in forms(email))
    assert not [p for p in fault_server.posts() if email in json.dumps(p.body)]


@pytest.mark.parametrize("external", ["false", "null"])
def test_a_local_tier_is_sent_the_text_as_it_is(fault_server, tmp_path, mlflow_store, external):
    tickets = tickets_with_personal_data(1)
    rows = run(tmp_path, spec(tmp_path, fault_server.base_url, external=external), tickets)
    email = tickets[0][1][1]
    assert email in json.dumps(fault_server.posts()[0].body)
    assert rows[0]["agents"] == ["llm-tier"]
    assert not [b for b in stored_files(tmp_path) for form in forms(email) if form in b]


def test_an_external_planner_plans_over_placeholders_and_local_specialists_get_the_values(
    fault_server, tmp_path
):
    import re

    from slm_agents.teamspec import load_team_spec

    email = "jane.roe@example.org"

    def reply(request):
        schema = request.body.get("response_format", {}).get("json_schema", {}).get("schema", {})
        if "steps" in schema.get("properties", {}):  # the planner: refer to what it was sent
            sent = re.search(r"<EMAIL_\d+>", request.text)
            return {"steps": [{"agent": "mail", "input": f"write to {sent and sent.group()}"}]}
        if "to" in schema.get("properties", {}):  # the local extractor
            found = re.search(r"\S+@\S+", request.text)
            return {"to": found.group() if found else "nobody"}
        return openai_fault_server.Reply("Done: mailed <EMAIL_1>.")  # the composer

    fault_server.reply = reply
    url = fault_server.base_url
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: planned
        agents:
          mail:
            kind: extractor
            endpoint: {{base_url: "{url}", model: local-slm}}
            json_schema: {{type: object, properties: {{to: {{type: string}}}}, required: [to]}}
          planner:
            kind: planner
            endpoint: {{base_url: "{url}", model: gpt-4o-mini, external: true}}
            specialists: [mail]
        flow: {{agent: planner}}
        """)
    )
    _, planner = load_team_spec(path).build()
    result = planner.run(f"Please send the statement to {email}")
    assert result.ok, result.error
    assert result.output["steps"][0]["output"] == {"to": email}  # the specialist saw the value
    assert result.output["answer"] == f"Done: mailed {email}."
    by_model = {}
    for post in fault_server.posts():
        by_model.setdefault(post.body["model"], []).append(post.text)
    assert all(email not in text for text in by_model["gpt-4o-mini"])  # plan and compose
    assert any(email in text for text in by_model["local-slm"])

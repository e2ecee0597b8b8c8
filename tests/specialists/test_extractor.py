"""Extractor on the real bundled SmolLM2 and the shortest real SROIE receipts, no mocks.

Generation is the slow part, so each schema runs once (a module fixture) and every test reads
its results; budgets stay small and strings are bounded with ``maxLength``.
"""

from __future__ import annotations

import json
import math
import shutil

import jsonschema
import pytest
from pydantic import BaseModel, Field

from slm_agents.datasets import data_dir
from slm_agents.result import Task
from slm_agents.specialists import Extractor
from slm_agents.specialists.extractor import (
    field_confidences,
    normalise_amount,
    normalise_date,
    value_spans,
)

SROIE = data_dir() / "sroie" / "receipts.jsonl"
pytestmark = pytest.mark.filterwarnings("ignore:.*prompts were longer than max_length")


class Receipt(BaseModel):
    company: str = Field(max_length=16)
    date: str = Field(max_length=12)
    total: str = Field(max_length=10)


SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": "string", "maxLength": 16},
        "total": {"type": "string", "maxLength": 8},
    },
    "required": ["company", "total"],
    "additionalProperties": False,
}


def boom(value):
    raise ValueError("no such company")


@pytest.fixture(scope="module")
def receipts():
    from slm_agents.finetune.recipes import load_receipts

    return sorted(load_receipts(SROIE), key=lambda r: len(r.text))[:4]


@pytest.fixture(scope="module")
def batch(slm, receipts):
    """One run_batch: two receipts and four bad rows; the generate calls are recorded."""
    calls = []
    real = slm.generate

    def spy(prompts, *args, **kwargs):
        out = real(prompts, *args, **kwargs)
        calls.append((list(prompts), out))
        return out

    extractor = Extractor(
        Receipt,
        slm,
        hooks={"date": "date", "total": normalise_amount, "company": boom},
        max_new_tokens=96,
    )
    slm.generate = spy
    try:
        tasks = [receipts[0].text, "", 42, Task(receipts[1].text, meta={"gold": "x"}), b"x", "  "]
        results = extractor.run_batch(tasks)
    finally:
        del slm.generate  # the instance attribute shadowed the method
    return extractor, results, calls


# ------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("25/12/2018", "2018-12-25"),
        ("25-12-18", "2018-12-25"),
        ("25.12.18", "2018-12-25"),
        ("25 DEC 2018", "2018-12-25"),
        ("25 Dec 18", "2018-12-25"),
        ("25-DEC-2018", "2018-12-25"),
        ("25/DEC/2018", "2018-12-25"),
        ("01 September 2018", "2018-09-01"),
        ("Dec 25, 2018", "2018-12-25"),
        ("OCT 3, 2016", "2016-10-03"),
        ("2018-12-25", "2018-12-25"),
        ("2018/12/25", "2018-12-25"),
        ("20181225", "2018-12-25"),
        ("25122018", "2018-12-25"),
        ("(06/12/2016)", "2016-12-06"),
        ("25/12/2018 8:13:39 PM", "2018-12-25"),
        ("04-05-2018 14:02", "2018-05-04"),
        ("9/3/2018", "2018-03-09"),  # both readings are dates: day first by default
        ("5/1/18", "2018-01-05"),
        ("31/12/99", "1999-12-31"),
    ],
)
def test_dates_become_iso(raw, iso):
    assert normalise_date(raw) == iso


def test_date_order_when_both_readings_are_dates():
    assert normalise_date("9/3/2018", dayfirst=False) == "2018-09-03"
    assert normalise_date("9/3/2018", dayfirst=None) == "9/3/2018"  # ambiguous: left alone
    assert normalise_date("3/3/2018", dayfirst=None) == "2018-03-03"  # same either way
    assert normalise_date("25/12/2018", dayfirst=False) == "2018-12-25"  # only one is a date
    assert normalise_date("12/25/2018") == "2018-12-25"  # month 25 does not exist


@pytest.mark.parametrize(
    "raw",
    ["", "tomorrow", "32/13/2018", "31/02/2018", "2018-13-45", "25 FOO 2018", "12:30",
     "TOTAL 14.10", "25/12", "1/2/3/4", None, 20181225],
)  # fmt: skip
def test_dates_that_are_not_dates_come_back_unchanged(raw):
    assert normalise_date(raw) == raw


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("RM14.10", "14.10"),
        ("RM 14.10", "14.10"),
        ("rm14.10", "14.10"),
        ("$14.10", "14.10"),
        ("14.10", "14.10"),
        ("14.1", "14.10"),
        ("14", "14.00"),
        ("0.125", "0.125"),
        ("1,234.50", "1234.50"),
        ("RM 1,234.5", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1 234.50", "1234.50"),
        ("14,10", "14.10"),
        ("€ 7,5", "7.50"),
        ("£1,000", "1000.00"),
        ("MYR 5.00", "5.00"),
        ("5.00 MYR", "5.00"),
        ("US$ 3.25", "3.25"),
        ("S$3.25", "3.25"),
        ("-9.99", "-9.99"),
        ("RM -9.99", "-9.99"),
        ("-RM9.99", "-9.99"),
        (" 170.00 ", "170.00"),
    ],
)
def test_amounts_lose_currency_and_separators(raw, plain):
    assert normalise_amount(raw) == plain


@pytest.mark.parametrize(
    "raw",
    ["", "FREE", "RM", "1,23,4", "12.34.56", "--5", "RM14.10 CASH", "2018-01-01", None, 14.1],
)
def test_amounts_that_are_not_amounts_come_back_unchanged(raw):
    assert normalise_amount(raw) == raw


# ----------------------------------------------------------------------- field confidence
def test_value_spans_cover_each_top_level_value():
    text = '{"a": "x\\"y", "b": [1, {"c": 2}], "d": null, "e": {"f": "g"}, "h": ""}'
    spans = value_spans(text)
    assert list(spans) == ["a", "b", "d", "e", "h"]
    assert text[slice(*spans["a"])] == 'x\\"y"'  # no opening quote, the closing one kept
    assert text[slice(*spans["b"])] == '[1, {"c": 2}]'
    assert text[slice(*spans["d"])] == "null"
    assert text[slice(*spans["e"])] == '{"f": "g"}'
    assert text[slice(*spans["h"])] == '"'
    assert value_spans("{}") == {}
    with pytest.raises(ValueError):
        value_spans("[1, 2]")


def test_field_confidence_is_the_geometric_mean_of_its_value_tokens():
    tokens = ['{"', "a", '":', ' "', "x", "y", '",', ' "', "b", '":', " ", "12", "}"]
    probs = [1.0, 0.9, 1.0, 1.0, 0.5, 0.8, 0.6, 1.0, 0.7, 1.0, 1.0, 0.3, 1.0]
    ends, at = [], 0
    for t in tokens:
        at += len(t)
        ends.append(at)
    text = "".join(tokens)
    conf = field_confidences(text, [math.log(p) for p in probs], ends)
    assert conf["a"] == pytest.approx((0.5 * 0.8 * 0.6) ** (1 / 3))  # x, y and the closing '",'
    assert conf["b"] == pytest.approx(0.3)  # keys and punctuation count for no field


# ----------------------------------------------------------------------- the real model
def test_one_generate_call_for_the_batch_and_bad_rows_fail_alone(batch):
    _, results, calls = batch
    assert len(calls) == 1 and len(calls[0][0]) == 2  # only the two real receipts
    assert len(results) == 6
    assert [r.ok for r in results] == [True, False, False, True, False, False]
    assert "empty" in results[1].error and "empty" in results[5].error
    assert "got int" in results[2].error and "got bytes" in results[4].error
    assert results[3].meta["gold"] == "x"  # the caller's meta comes back


def test_outputs_validate_with_per_field_confidence(batch):
    _, results, calls = batch
    for result in (results[0], results[3]):
        assert isinstance(result.output, Receipt)
        Receipt.model_validate(result.output.model_dump())
        conf = result.meta["field_confidence"]
        assert set(conf) == {"company", "date", "total"}
        assert all(0.0 <= c <= 1.0 for c in conf.values()), conf
        assert result.confidence == min(conf.values())
        step = result.path[0]
        assert step.agent == "extractor" and step.kind == "llm" and step.cost > 0
        assert step.prompt_tokens > 50 and step.completion_tokens > 10
    extractor = batch[0]
    for gen in calls[0][1]:  # the ids behind the logprobs (agents/models change)
        assert len(gen.token_ids) == len(gen.token_logprobs) == gen.usage.completion_tokens
        # CausalLM ties tokens to characters, so the fields are scored token by token
        assert extractor.model.token_ends(gen.token_ids)[-1] == len(gen.text)


def test_hooks_normalise_and_a_failing_hook_keeps_the_raw_value(batch):
    _, results, _ = batch
    for result in (results[0], results[3]):
        raw, out = result.meta["raw_output"], result.output
        assert out.date == normalise_date(raw["date"])
        assert out.total == normalise_amount(raw["total"])
        assert out.company == raw["company"]  # the hook raised
        assert any("hook for 'company' failed" in w for w in result.meta["warnings"])


def test_a_json_schema_dict_gives_a_valid_dict(slm, receipts):
    extractor = Extractor(SMALL_SCHEMA, slm, max_new_tokens=64)
    [result] = extractor.run_batch([receipts[0].text])
    assert result.ok, result.error
    assert isinstance(result.output, dict)
    jsonschema.validate(result.output, SMALL_SCHEMA)
    assert set(result.meta["field_confidence"]) == {"company", "total"}


def test_running_out_of_tokens_is_a_clear_error(slm, receipts):
    [result] = Extractor(SMALL_SCHEMA, slm, max_new_tokens=6).run_batch(["ACME  TOTAL RM5.00"])
    assert not result.ok and result.output is None
    assert "max_new_tokens=6" in result.error and "JSON was complete" in result.error


def test_hooks_the_schema_rejects_are_undone(slm):
    def shout(value):
        return value.upper() * 10  # longer than total's maxLength of 8

    extractor = Extractor(SMALL_SCHEMA, slm, hooks={"total": shout, "company": str.lower})
    warnings: list[str] = []
    output, error = extractor._finish({"company": "ACME", "total": "RM5"}, warnings)
    assert error is None and output == {"company": "acme", "total": "RM5"}
    assert len(warnings) == 1 and "hook for 'total'" in warnings[0] and "rejects" in warnings[0]


def test_bad_configuration_is_refused_with_a_reason(slm):
    with pytest.raises(ValueError, match="unknown field 'price'"):
        Extractor(Receipt, slm, hooks={"price": "amount"})
    with pytest.raises(ValueError, match="built-ins are"):
        Extractor(Receipt, slm, hooks={"total": "money"})
    with pytest.raises(ValueError, match="object with properties"):
        Extractor({"type": "string"}, slm)
    with pytest.raises(ValueError, match="pass schema="):
        Extractor(None, slm)


# --------------------------------------------------------------------------- the adapter
@pytest.fixture(scope="module")
def adapter(receipts, tmp_path_factory):
    """The extractor recipe on four short receipts: rank 4, 256 tokens, two steps."""
    from slm_agents.finetune.loop import TrainConfig
    from slm_agents.finetune.recipes import train_extractor
    from slm_agents.finetune.sft import SFTSettings

    data = tmp_path_factory.mktemp("sroie") / "receipts.jsonl"
    wanted = {r.id for r in receipts}
    with SROIE.open(encoding="utf-8") as src, data.open("w", encoding="utf-8") as out:
        out.writelines(line for line in src if json.loads(line)["id"] in wanted)
    out = tmp_path_factory.mktemp("extractor-adapter")
    train_extractor(
        data,
        out,
        holdout=0,
        settings=SFTSettings(rank=4, alpha=8, max_length=256, validation=0.0),
        config=TrainConfig(epochs=1, batch_size=2, max_steps=2, learning_rate=1e-3),
        progress=False,
        track=False,
    )
    return out


def test_an_adapter_directory_is_loaded_with_its_training_prompt(adapter, receipts, tmp_path):
    from slm_agents.finetune.recipes import RECEIPT_SCHEMA, receipt_prompt

    recorded = Extractor(adapter=adapter)  # the base model and the schema come from sft.json
    assert recorded.adapter == "extractor" and "extractor" in recorded.model.adapters
    assert recorded.json_schema == RECEIPT_SCHEMA
    lm = recorded.model
    assert recorded._messages(Task(receipts[0].text)) == receipt_prompt(receipts[0])

    with pytest.warns(UserWarning, match="trained on fields"):
        small = Extractor(SMALL_SCHEMA, lm, adapter=adapter, max_new_tokens=64)
    [result] = small.run_batch([receipts[0].text])
    assert result.ok, result.error
    jsonschema.validate(result.output, SMALL_SCHEMA)
    assert small._messages(Task(receipts[0].text)) == receipt_prompt(receipts[0])

    other = tmp_path / "other"  # an adapter trained with other words: its own instruction
    shutil.copytree(adapter, other)
    info = json.loads((other / "sft.json").read_text())
    info["instruction"] = "Read this receipt; answer in JSON."
    (other / "sft.json").write_text(json.dumps(info))
    reworded = Extractor(model=lm, adapter=other, name="reworded")
    [message] = reworded._messages(Task(receipts[0].text))
    assert message["content"] == f"Read this receipt; answer in JSON.\n\n{receipts[0].text}"
    assert set(lm.adapters) == {"extractor", "reworded"}

"""Causal LoRA SFT on tiny real slices: the bundled SmolLM2, a few SROIE receipts, no mocks.

Receipts are the shortest ones of the file, rows are cut to 256 tokens, rank 4: each training
test runs a handful of optimizer steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slm_agents.cli import app
from slm_agents.datasets import data_dir
from slm_agents.finetune.data import DataError
from slm_agents.finetune.extraction_eval import field_matches, normalise, score
from slm_agents.finetune.loop import TrainConfig
from slm_agents.finetune.recipes import (
    RECEIPT_SCHEMA,
    TextWindows,
    load_receipts,
    receipt_prompt,
    receipt_response,
    receipts_chat,
    split_receipts,
)
from slm_agents.finetune.sft import SFTSettings, train_sft
from slm_agents.finetune.sft_data import load_chat
from slm_agents.models.adapters import SFT_FILE, AdapterError, load_tuned

SROIE = data_dir() / "sroie" / "receipts.jsonl"
# Tiny slices are cut to 256 tokens on purpose; the warning about it is tested once, below.
pytestmark = pytest.mark.filterwarnings("ignore:.*prompts were longer than max_length")
TINY = SFTSettings(rank=4, alpha=8, max_length=256, validation=0.0)
runner = CliRunner()


@pytest.fixture(scope="module")
def receipts():
    return sorted(load_receipts(SROIE), key=lambda r: len(r.text))[:6]


@pytest.fixture(scope="module")
def receipts_file(receipts, tmp_path_factory):
    """The short receipts in SROIE's own JSONL format."""
    path = tmp_path_factory.mktemp("sroie") / "receipts.jsonl"
    wanted = {r.id for r in receipts}
    with SROIE.open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        out.writelines(line for line in src if json.loads(line)["id"] in wanted)
    return path


@pytest.fixture(scope="module")
def trained(receipts, tmp_path_factory):
    """An adapter trained on three receipts, validated on the same three (it must memorise)."""
    data = receipts_chat(receipts[:3], "sroie[short]")
    out = tmp_path_factory.mktemp("adapter")
    config = TrainConfig(epochs=4, batch_size=2, learning_rate=3e-3, warmup_steps=1)
    result = train_sft(
        data, out, validation=data, settings=TINY, config=config, progress=False, track=False
    )
    return result


def test_training_lowers_the_loss_and_saves_a_peft_adapter(trained):
    assert trained.report.steps == 8 and trained.report.stopped == "completed"
    assert trained.loss < 0.7 * trained.start_loss, trained.summary()
    assert trained.perplexity < trained.start_perplexity
    assert trained.tokens_per_second > 0 and trained.tokens_per_epoch > 0
    info = json.loads((trained.output / SFT_FILE).read_text())
    assert info["base_model"] == "smollm2-135m-instruct" and info["recipe"] == "sft"
    assert info["settings"]["rank"] == 4 and info["metrics"]["validation_loss"] == trained.loss
    assert (trained.output / "adapter_model.safetensors").exists()
    assert not (trained.output / "checkpoint" / "checkpoint.pt").exists()  # finished: removed


def test_the_adapter_loads_into_causal_lm_and_changes_its_output(trained, receipts):
    lm, name, info = load_tuned(trained.output)
    assert name in lm.adapters and info["recipe"] == "sft"
    prompt = [receipt_prompt(receipts[0])]
    tuned = lm.generate(prompt, max_new_tokens=12, adapter=name)[0]
    plain = lm.generate(prompt, max_new_tokens=12)[0]
    assert tuned.error is None and plain.error is None
    assert tuned.text != plain.text
    assert tuned.text.startswith('{"company": "'), tuned.text  # learned the answer format


def test_a_step_budget_stop_resumes_from_the_checkpoint(receipts, tmp_path):
    data = receipts_chat(receipts[:2], "sroie[short]")
    settings = SFTSettings(rank=4, alpha=8, max_length=128, validation=0.0)
    config = TrainConfig(epochs=2, batch_size=1, learning_rate=1e-3, max_steps=2)
    quiet = {"progress": False, "track": False}
    first = train_sft(data, tmp_path, settings=settings, config=config, **quiet)
    assert first.report.stopped == "step-budget" and first.report.steps == 2
    assert (tmp_path / "checkpoint" / "checkpoint.pt").exists()

    with pytest.raises(ValueError, match="other settings"):  # another run is refused
        train_sft(
            data,
            tmp_path,
            settings=SFTSettings(rank=8, alpha=16, max_length=128, validation=0.0),
            config=TrainConfig(epochs=2, batch_size=1, max_steps=1),
            **quiet,
        )

    config.max_steps = None  # a budget may change between the stop and the resumption
    second = train_sft(data, tmp_path, settings=settings, config=config, **quiet)
    assert second.report.resumed_from_step == 2
    assert second.report.steps == 4 and second.report.stopped == "completed"
    assert second.report.losses[:2] == first.report.losses  # the history carried over


def test_a_run_without_validation_logs_no_validation_metric(receipts, tmp_path, mlflow_store):
    """No validation data means no val_loss at all, not a perfect-looking 0.0."""
    import mlflow
    from mlflow.tracking import MlflowClient

    data = receipts_chat(receipts[:2], "sroie[short]")
    config = TrainConfig(epochs=1, batch_size=2, learning_rate=1e-3, warmup_steps=1)
    result = train_sft(data, tmp_path / "adapter", settings=TINY, config=config, progress=False)
    assert result.validation_rows == 0 and result.loss is None and result.start_loss is None
    run = mlflow.search_runs(experiment_names=["tests"], output_format="list")[0]
    client = MlflowClient()
    for name in ("val_loss", "final_val_loss"):
        assert client.get_metric_history(run.info.run_id, name) == [], name
    assert run.data.metrics["tokens_per_second"] > 0  # what was measured is still there


def test_prompts_are_cut_from_the_left_and_responses_never():
    from transformers import AutoTokenizer

    from slm_agents.models.sources import DEFAULT_CAUSAL, ensure_converted, resolve

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_converted(resolve(DEFAULT_CAUSAL))))
    long = load_chat_rows([{"prompt": "word " * 300, "response": "the answer"}])
    with pytest.warns(UserWarning, match="1 of 1 prompts"):
        encoded = long.encode(tokenizer, 64)
    ids, start = encoded.ids[0], encoded.starts[0]
    assert len(ids) == 64 and encoded.truncated == 1
    answer = tokenizer.decode(ids[start:])
    assert answer.startswith("the answer") and answer.endswith("<|im_end|>")
    labels = encoded.batch([0])["labels"][0]
    assert (labels[:start] == -100).all() and (labels[start:] >= 0).all()
    with pytest.raises(DataError, match="response has .* tokens"):
        load_chat_rows([{"prompt": "hi", "response": "word " * 100}]).encode(tokenizer, 32)

    windows = TextWindows(["def f():\n    return 1\n" * 40]).encode(tokenizer, 50)
    assert max(windows.lengths) == 50 and all(s == 0 for s in windows.starts)


def test_scoring_forgives_whitespace_and_case_only():
    truth = {"company": "TAN CHAY YEE", "date": "25/12/2018", "address": "A, B", "total": "9.00"}
    assert score([dict(truth)], [truth]) == {
        "per_field": {"company": 1.0, "date": 1.0, "address": 1.0, "total": 1.0},
        "mean": 1.0,
        "mean_spaces_kept": 1.0,
    }
    sloppy = {"company": "  tan  chay\nyee ", "date": "25/12/18", "address": "A,B", "total": "9"}
    assert field_matches(sloppy, truth) == {
        "company": True,
        "date": False,
        "address": True,  # the space after a comma is whitespace
        "total": False,
    }
    assert field_matches(sloppy, truth, keep_spaces=True)["address"] is False
    assert score([sloppy], [truth])["mean"] == 0.5
    assert score([sloppy], [truth])["mean_spaces_kept"] == 0.25
    assert normalise(" A\t b ") == "ab" and normalise(" A\t b ", keep_spaces=True) == "a b"
    assert normalise(None) == ""
    assert score([None, truth], [truth, truth])["mean"] == 0.5  # a failed row scores 0


def test_receipt_split_is_reproducible_and_answers_are_what_the_grammar_emits(receipts):
    import xgrammar as xgr
    from transformers import AutoTokenizer

    from slm_agents.models.constraints import GrammarCompiler, make_constraint
    from slm_agents.models.sources import DEFAULT_CAUSAL, ensure_converted, resolve

    all_receipts = load_receipts(SROIE)
    train, held = split_receipts(all_receipts, 50, seed=0)
    assert len(held) == 50 and len(train) == len(all_receipts) - 50
    assert [r.id for r in split_receipts(all_receipts, 50, seed=0)[1]] == [r.id for r in held]
    assert not {r.id for r in train} & {r.id for r in held}
    # The trained answer must be a string the constrained decoder can produce, or training
    # and inference disagree on the format (spaces after separators, key order...).
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_converted(resolve(DEFAULT_CAUSAL))))
    grammar = GrammarCompiler(tokenizer, len(tokenizer)).compile(make_constraint(RECEIPT_SCHEMA))
    for receipt in receipts:
        matcher = xgr.GrammarMatcher(grammar)
        assert matcher.accept_string(receipt_response(receipt.fields)), receipt.fields
        assert matcher.is_completed()  # nothing more is required after the closing brace
    assert not xgr.GrammarMatcher(grammar).accept_string('{"company":  "A"')  # no free spaces


def load_chat_rows(rows: list[dict], tmp: Path | None = None):
    """Write rows as JSONL in a temp file and load them through the real loader."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    try:
        return load_chat(path)
    finally:
        shutil.rmtree(folder)


def test_bad_data_is_reported_with_file_row_and_problem(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        load_chat(empty)
    no_response = tmp_path / "pairs.jsonl"
    no_response.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl: row 2: no 'response'"):
        load_chat(no_response)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", \n')
    with pytest.raises(DataError, match="row 2 is not valid JSON"):
        load_chat(broken)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="row 1: the last message must be the assistant"):
        load_chat(chat)
    receipts = tmp_path / "receipts.jsonl"
    receipts.write_text(json.dumps({"id": "1", "lines": [], "fields": {"total": "1"}}) + "\n")
    with pytest.raises(DataError, match="row 1: the receipt has no OCR text"):
        load_receipts(receipts)


def test_a_corrupted_adapter_directory_is_named(trained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained.output, broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError, match="broken: cannot load the LoRA adapter") as unusable:
        load_tuned(broken)
    assert unusable.value.__cause__ is not None  # the loader's own error stays in the chain
    (broken / "adapter_config.json").write_text("{ half")
    with pytest.raises(AdapterError, match="adapter_config.json: not valid JSON") as corrupted:
        load_tuned(broken)
    assert isinstance(corrupted.value.__cause__, json.JSONDecodeError)
    (broken / "adapter_config.json").unlink()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_tuned(broken)


def test_cli_trains_an_extractor_and_evaluate_writes_the_promised_json(receipts_file, tmp_path):
    out = tmp_path / "extractor"
    trained = runner.invoke(
        app,
        [
            "finetune", "extractor", "--data", str(receipts_file), "--output", str(out),
            "--holdout", "2", "--max-steps", "2", "--max-length", "256", "--rank", "4",
            "--batch-size", "2", "--no-track", "--json", str(tmp_path / "train.json"),
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    facts = json.loads((tmp_path / "train.json").read_text())
    assert facts["recipe"] == "extractor" and facts["steps"] == 2 and facts["holdout"] == 2

    scored = runner.invoke(
        app,
        [
            "evaluate", "extractor", str(out), "--data", str(receipts_file), "--heldout",
            "--max-new-tokens", "128", "--json", str(tmp_path / "eval.json"),
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 2 and 0.0 <= result["mean"] <= 1.0
    assert set(result["per_field"]) == {"company", "date", "address", "total"}
    assert len(result["rows"]) == 2 and "exact_company" in scored.output

    missing = runner.invoke(
        app, ["evaluate", "extractor", str(tmp_path / "nowhere"), "--data", str(receipts_file)]
    )
    assert missing.exit_code == 2 and "nowhere" in missing.output

"""Loading labelled data: real BANKING77 rows, and every kind of bad file gives a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_agents.finetune.data import DataError, load_labelled

TICKETS = Path(__file__).resolve().parents[2] / "examples" / "data" / "support_tickets.csv"


def test_loads_real_tickets_and_splits_deterministically():
    data = load_labelled(TICKETS, "text", "category")
    assert len(data) == 40 and len(data.label_names) > 10
    train, val = data.split(validation=0.25, seed=3)
    again_train, again_val = data.split(validation=0.25, seed=3)
    assert val.texts == again_val.texts and train.texts == again_train.texts
    assert sorted(train.texts + val.texts) == sorted(data.texts)  # a partition


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("a.csv", "", {}, "no rows"),
        ("a.csv", "body,tag\nhi,a\n", {}, "no column 'text'; columns are ['body', 'tag']"),
        ("a.csv", "text,label\nhi,a\n ,b\n", {}, "row 3: empty 'text'"),
        ("a.csv", "text,label\nhi,a\nyo,\n", {}, "row 3: empty 'label'"),
        ("a.csv", "text,label\nhi,a\nyo,a\n", {}, "only one class ('a')"),
        ("a.csv", "text,label\nhi,a\nyo,z\n", {"labels": ["a", "b"]}, "row 3: unknown label 'z'"),
        ("a.csv", b"text,label\nh\xe9,a\nyo,b\n", {}, "not UTF-8 text"),
        ("a.jsonl", '{"text": "hi", "label": "a"}\n{oops\n', {}, "row 2 is not valid JSON"),
        ("a.jsonl", '["hi", "a"]\n', {}, "row 1 is a JSON list, not an object"),
        ("a.txt", "hi", {}, "unsupported file type '.txt'"),
    ],
)
def test_bad_files_name_the_file_row_and_problem(tmp_path, name, content, kwargs, message):
    path = write(tmp_path, name, content)
    with pytest.raises(
        DataError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ) as err:
        load_labelled(path, **kwargs)
    assert str(path) in str(err.value)


def test_jsonl_with_other_columns(tmp_path):
    rows = [{"body": "card lost", "dept": "cards"}, {"body": "send money", "dept": "transfers"}]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_labelled(path, "body", "dept")
    assert data.labels == ["cards", "transfers"] and data.label_names == ["cards", "transfers"]


def test_a_parse_error_keeps_its_cause(tmp_path):
    """The DataError names the row; the decoder's own error stays on ``__cause__``."""
    path = write(tmp_path, "a.jsonl", '{"text": "hi", "label": "a"}\n{oops\n')
    with pytest.raises(DataError, match="row 2") as err:
        load_labelled(path)
    assert isinstance(err.value.__cause__, json.JSONDecodeError)

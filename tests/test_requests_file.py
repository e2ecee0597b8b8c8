"""Reading a job's requests: each bad row is its own error, the rest of the file is read."""

from __future__ import annotations

import json

import pytest

from slm_agents.requests_file import RequestsFileError, read_requests


def test_csv_rows_with_ids_labels_and_meta(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,text,category,extra\na1,card lost,cards,x\na2,hello,greet,y\n")
    first, second = read_requests(path, label_column="category")
    assert (first.id, first.text, first.label, first.meta) == (
        "a1",
        "card lost",
        "cards",
        {"category": "cards", "extra": "x"},
    )
    assert second.error is None and second.label == "greet"


def test_missing_ids_are_row_numbers_that_survive_a_rerun(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert [r.id for r in read_requests(path)] == ["row-1", "row-2"]
    assert [r.id for r in read_requests(path)] == ["row-1", "row-2"]


def test_bad_rows_are_reported_one_by_one(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [
        b'{"id": "ok", "text": "fine"}',
        b'{"id": "enc", "text": "caf\xe9"}',  # latin-1, not UTF-8
        b'{"id": "broken", "text": ',
        b'["not", "an", "object"]',
        b'{"id": "ok", "text": "again"}',
        b'{"id": "num", "text": 42}',
        b'{"id": "last", "text": "still read"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = read_requests(path)
    assert len(rows) == 7
    errors = {r.id: r.error for r in rows}
    assert errors["ok"] is None and errors["last"] is None
    assert "row 2: not valid UTF-8" in errors["row-2"]
    assert "row 3: not valid JSON" in errors["row-3"]
    assert "expected a JSON object" in errors["row-4"]
    assert "duplicate id 'ok'" in errors["row-5"]
    assert "must be text, got int" in errors["num"]


def test_csv_with_a_wrongly_encoded_row_keeps_the_others(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,text\n1,plain\n2,caf\xe9 cr\xe8me\n3,also plain\n4,a,b\n")
    rows = read_requests(path)
    assert [r.error is None for r in rows] == [True, False, True, False]
    assert "not valid UTF-8" in rows[1].error and "3 cells for 2 columns" in rows[3].error


def test_ocr_lines_are_joined_into_one_text(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "r1", "lines": [{"text": "SHOP"}, {"text": "TOTAL 9.00"}]}))
    [row] = read_requests(path, text_column="lines")
    assert row.text == "SHOP\nTOTAL 9.00"


def test_whole_file_problems_name_the_file(tmp_path):
    with pytest.raises(RequestsFileError, match="unknown format '.txt'"):
        read_requests(tmp_path / "x.txt")
    with pytest.raises(RequestsFileError, match="cannot read"):
        read_requests(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("id,body\n1,hi\n")
    with pytest.raises(RequestsFileError, match=r"no 'text' column; columns are \['body', 'id'\]"):
        read_requests(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(RequestsFileError, match="empty file"):
        read_requests(tmp_path / "empty.csv")


def test_a_csv_cell_over_the_csv_field_limit_is_its_own_error(tmp_path):
    # Python's csv stops at cells over 131,072 characters; a pasted 300 KB log must not stop
    # the file there: its row is an error naming the cell, the rows after it are read.
    log = "ERROR disk full at /var/log/app " * 10_000  # 320,000 characters
    path = tmp_path / "tickets.csv"
    path.write_text(f'id,text\n1,my card is lost\n2,"{log}"\n3,send money abroad\n')
    requests = read_requests(path)
    assert [r.id for r in requests] == ["1", "2", "3"]
    ok, bad, after = requests
    assert ok.error is None and after.error is None and after.text == "send money abroad"
    assert bad.error == (
        "tickets.csv row 2: cell 'text' has 320,000 characters; the limit is 131,072"
    )
    assert bad.text is None  # the output record does not repeat the 300 KB
    import csv

    assert csv.field_size_limit() == 131_072  # the process-wide limit is restored

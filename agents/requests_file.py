"""Read a job's requests from CSV or JSONL, one row at a time, so one bad row spoils nothing.

Why per row: a stream of real tickets has the odd empty line, a row saved in the wrong encoding,
a broken JSON line. Each such row becomes a :class:`Request` with ``error`` set (the job writes
it to the output as a failed result) and every other row goes on. Only problems with the whole
file (missing, unknown format, no text column) raise :class:`RequestsFileError`.

Text: a string, or a list of lines (strings or ``{"text": ...}`` objects, as SROIE's OCR lines
are), joined with newlines. Ids: the ``id_column`` when present; otherwise ``row-N`` from the
row's position in the file (1-based), which stays the same when a job is resumed. A repeated id
is an error on the later row.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# Python's csv module refuses cells over 131,072 characters and stops the whole file there; we
# read any size and make a row with such a cell (a pasted log, say) its own error instead.
MAX_CSV_CELL = 131_072


class RequestsFileError(ValueError):
    """The requests file as a whole is unusable; the message names the file and the problem."""


@dataclass
class Request:
    id: str
    text: str | None
    label: str | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_requests(
    path: str | Path,
    text_column: str = "text",
    id_column: str = "id",
    label_column: str | None = None,
) -> list[Request]:
    """Every row of ``path`` (CSV or JSONL) as a Request, bad rows included with their error."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise RequestsFileError(f"{path}: unknown format {path.suffix!r}; use .csv or .jsonl")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RequestsFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    rows = _csv_rows(path, raw) if kind == "csv" else _jsonl_rows(raw)
    requests, seen = [], set()
    columns_seen: set[str] = set()
    for number, row in rows:
        where = f"{path.name} row {number}"
        if isinstance(row, str):  # the row could not be read; row holds the reason
            requests.append(Request(f"row-{number}", None, error=f"{where}: {row}"))
            continue
        columns_seen |= set(row)
        huge = _huge_cells(row) if kind == "csv" else {}
        rid = str(row.get(id_column) or f"row-{number}")
        text = _joined(row.get(text_column))
        label = row.get(label_column) if label_column else None
        meta = {k: v for k, v in row.items() if k not in (text_column, id_column)}
        request = Request(
            rid, text if isinstance(text, str) else None, _text_or_none(label), None, meta
        )
        if rid in seen:
            request.id, request.error = f"row-{number}", f"{where}: duplicate id {rid!r}"
        elif huge:
            column, size = next(iter(huge.items()))
            request.error = (
                f"{where}: cell {column!r} has {size:,} characters; the limit is {MAX_CSV_CELL:,}"
            )
            request.text = None  # the record does not repeat the huge cell
            request.meta = {k: v for k, v in request.meta.items() if k not in huge}
        elif text_column not in row:
            request.error = f"{where}: no {text_column!r} column; it has {sorted(row)}"
        elif not isinstance(text, str):
            request.error = f"{where}: {text_column!r} must be text, got {type(text).__name__}"
        elif _has_undecodable(row):
            request.error = f"{where}: not valid UTF-8 (wrong encoding?)"
            request.text = _replaced(request.text)  # kept readable for the error record
            request.meta = {k: _replaced(v) for k, v in request.meta.items()}
        seen.add(request.id)
        requests.append(request)
    if requests and text_column not in columns_seen:
        raise RequestsFileError(
            f"{path}: no {text_column!r} column; columns are {sorted(columns_seen)}"
        )
    return requests


def _csv_rows(path: Path, raw: bytes) -> list[tuple[int, dict[str, Any] | str]]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so only their rows fail
    text = raw.decode(
        "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8", "surrogateescape"
    )
    limit = csv.field_size_limit(sys.maxsize)  # the file is in memory already; we check below
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise RequestsFileError(f"{path}: empty file, no header row")
        out: list[tuple[int, dict[str, Any] | str]] = []
        for number, row in enumerate(reader, start=1):
            if None in row:  # more cells than header columns
                out.append((number, f"{len(row[None]) + len(reader.fieldnames)} cells for "
                                    f"{len(reader.fieldnames)} columns"))  # fmt: skip
                continue
            out.append((number, dict(row)))
        return out
    finally:
        csv.field_size_limit(limit)


def _huge_cells(row: dict[str, Any]) -> dict[str, int]:
    """Cells over :data:`MAX_CSV_CELL` characters, by column, with their sizes."""
    return {k: len(v) for k, v in row.items() if isinstance(v, str) and len(v) > MAX_CSV_CELL}


def _jsonl_rows(raw: bytes) -> list[tuple[int, dict[str, Any] | str]]:
    out: list[tuple[int, dict[str, Any] | str]] = []
    number = 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            out.append((number, f"not valid UTF-8 (byte {line[exc.start]:#04x}); wrong encoding?"))
            continue
        except json.JSONDecodeError as exc:
            out.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            out.append((number, f"expected a JSON object, got {type(value).__name__}"))
            continue
        out.append((number, value))
    return out


def _has_undecodable(row: dict[str, Any]) -> bool:
    return any(
        isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v) for v in row.values()
    )


def _replaced(value: Any) -> Any:
    """Undecodable bytes (kept as lone surrogates) shown as U+FFFD, so the text can be written."""
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _joined(value: Any) -> Any:
    """A list of lines (strings or {"text": ...} objects) as one text; anything else as is."""
    if isinstance(value, list) and all(isinstance(x, str | dict) for x in value):
        return "\n".join(str(x.get("text", "")) if isinstance(x, dict) else x for x in value)
    return value


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)

"""Labelled text from CSV or JSONL, validated before any training starts.

Every problem names the file, the row (1-based, as a spreadsheet shows it; header is row 1 in a
CSV) and what is wrong: a missing column lists the columns that exist; an empty text, an unknown
label, a single class or a file in the wrong encoding are errors, not silent skips.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """The data file is unusable; the message names the file, the row and the problem."""


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        """Sorted label names: the label map saved with a model uses this order."""
        return sorted(set(self.labels))

    def split(self, validation: float = 0.1, seed: int = 0) -> tuple[LabelledTexts, LabelledTexts]:
        """Deterministic, stratified split: same file and seed, same split, on any machine."""
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation must be in (0, 1), got {validation!r}")
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            by_label.setdefault(label, []).append(i)
        rng = random.Random(seed)
        held: list[int] = []
        for label in sorted(by_label):
            rows = by_label[label]
            rng.shuffle(rows)
            held.extend(rows[: int(round(len(rows) * validation))])
        held_set = set(held)
        train = [i for i in range(len(self)) if i not in held_set]
        return self._subset(train, "train"), self._subset(sorted(held), "validation")

    def _subset(self, rows: list[int], part: str) -> LabelledTexts:
        return LabelledTexts(
            [self.texts[i] for i in rows], [self.labels[i] for i in rows], f"{self.source}:{part}"
        )


def read_rows(path: str | Path) -> tuple[list[dict[str, object]], int]:
    """Rows of a .csv or .jsonl file, and the row number of the first data row."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: row {number} is not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}: row {number} is a JSON {type(row).__name__}, not an object"
                )
            rows.append(row)
        return rows, 1
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines())), 2
    raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .jsonl")


def load_labelled(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    labels: Sequence[str] | None = None,
) -> LabelledTexts:
    """Load and validate texts with labels. ``labels`` restricts them to a known set."""
    rows, first = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    columns = sorted(rows[0])
    for column in (text_column, label_column):
        if column not in rows[0]:
            raise DataError(f"{path}: no column {column!r}; columns are {columns}")
    known = set(labels) if labels is not None else None
    texts, names = [], []
    for offset, row in enumerate(rows):
        number = first + offset
        text, label = row.get(text_column), row.get(label_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: row {number}: empty {text_column!r}")
        if label is None or str(label).strip() == "":
            raise DataError(f"{path}: row {number}: empty {label_column!r}")
        label = str(label)
        if known is not None and label not in known:
            raise DataError(
                f"{path}: row {number}: unknown label {label!r}; known: {sorted(known)}"
            )
        texts.append(text)
        names.append(label)
    counts = Counter(names)
    if len(counts) < 2:
        raise DataError(f"{path}: only one class ({next(iter(counts))!r}); need at least two")
    return LabelledTexts(texts, names, str(path))

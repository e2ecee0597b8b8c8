"""Two built-in SFT recipes: a receipt field extractor (SROIE) and a code "house style" adapter.

**Extractor.** Each receipt becomes one chat turn: a short instruction, then the OCR lines joined
with newlines; the answer is the four fields as one-line JSON in a fixed key order
(``{"company": ..., "date": ..., "address": ..., "total": ...}``), exactly what JSON-schema
constrained decoding with :data:`RECEIPT_SCHEMA` emits, so training and inference agree token
for token. The fields, schema and prompt are :mod:`slm_agents.specialists.receipts`, shared with
the Extractor that uses the adapter.
The held-out split is reproducible: sort the receipt ids, shuffle them with
``random.Random(seed)`` (seed 0 by default), and the first ``holdout`` ids (50) are held out;
``sft.json`` lists them. A further 5% of the training receipts is the validation set for early
stopping, so the held-out receipts never influence training or the choice of weights.

**Code.** The ``*.py`` files of a folder (by default the installed ``markdown_it`` package,
MIT-licensed pure Python) are split by file with a seeded shuffle of their sorted relative paths
(20% test, 10% validation), each file is tokenized and cut into windows of ``max_length``
tokens, and the adapter learns to continue them (loss on every token). The test files' perplexity
before and after training shows what the adapter learned of the project's style.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_agents.finetune.data import DataError, read_rows
from slm_agents.finetune.loop import TrainConfig
from slm_agents.finetune.sft import SFTResult, SFTSettings, train_sft
from slm_agents.finetune.sft_data import ChatData, ChatExample, Tokenized
from slm_agents.specialists.receipts import (
    FIELDS,
    INSTRUCTION,
    RECEIPT_SCHEMA,
    Receipt,
    receipt_prompt,
)

HOLDOUT = 50

# Settings that suit SROIE on a 2-core CPU (see benchmarks/finetune_sft.py for the numbers).
EXTRACTOR_SETTINGS = {"max_length": 1280, "rank": 32, "alpha": 64}
EXTRACTOR_TRAIN = {
    "epochs": 6,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "warmup_steps": 10,
    "patience": 2,
}
CODE_SETTINGS = {"max_length": 512}
CODE_TRAIN = {"epochs": 3, "batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 10}


# ------------------------------------------------------------------------------ receipts
def load_receipts(path: str | Path) -> list[Receipt]:
    """SROIE JSONL rows ``{"id", "lines": [{"box", "text"}], "fields": {...}}``, validated."""
    rows, first = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    receipts, seen = [], set()
    for offset, row in enumerate(rows):
        where = f"{path}: row {first + offset}"
        missing = [k for k in ("id", "lines", "fields") if k not in row]
        if missing:
            raise DataError(f"{where}: no {missing}; a receipt needs id, lines and fields")
        lines = row["lines"]
        if not isinstance(lines, list):
            raise DataError(f"{where}: 'lines' must be a list of {{'box', 'text'}} objects")
        texts = [str(x.get("text", "")) if isinstance(x, dict) else str(x) for x in lines]
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise DataError(f"{where}: the receipt has no OCR text")
        fields = row["fields"]
        if not isinstance(fields, dict) or not any(f in fields for f in FIELDS):
            have = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise DataError(f"{where}: 'fields' needs some of {list(FIELDS)}; it has {have}")
        rid = str(row["id"])
        if rid in seen:
            raise DataError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        # A field the annotators left out (one SROIE receipt has no address) is empty: the
        # model should learn to answer "" rather than invent one.
        receipts.append(Receipt(rid, texts, {f: str(fields.get(f) or "") for f in FIELDS}))
    return receipts


def receipt_response(fields: dict[str, str]) -> str:
    """The fields as JSON in schema order, spaced exactly as constrained decoding spaces them.

    xgrammar's JSON grammar without free whitespace still puts a space after ``,`` and ``:``;
    an answer trained without those spaces makes the model's favourite token (``","``) illegal
    under the constraint, and it then runs on inside the string instead of closing it.
    """
    return json.dumps({f: fields[f] for f in FIELDS}, ensure_ascii=False, separators=(", ", ": "))


def split_receipts(
    receipts: Sequence[Receipt], holdout: int = HOLDOUT, seed: int = 0
) -> tuple[list[Receipt], list[Receipt]]:
    """(train, held out): the held-out receipts are the first ``holdout`` of the sorted ids
    shuffled with ``random.Random(seed)``; both lists keep the file's order."""
    if not 0 <= holdout < len(receipts):
        raise ValueError(f"holdout must be in [0, {len(receipts) - 1}], got {holdout}")
    ids = sorted(r.id for r in receipts)
    random.Random(seed).shuffle(ids)
    held = set(ids[:holdout])
    return [r for r in receipts if r.id not in held], [r for r in receipts if r.id in held]


def receipts_chat(receipts: Sequence[Receipt], source: str = "") -> ChatData:
    return ChatData(
        [ChatExample(receipt_prompt(r), receipt_response(r.fields)) for r in receipts], source
    )


def train_extractor(
    data: str | Path,
    output: str | Path,
    *,
    holdout: int = HOLDOUT,
    split_seed: int = 0,
    settings: SFTSettings | None = None,
    config: TrainConfig | None = None,
    limit: int | None = None,
    progress: bool = True,
    track: bool = True,
) -> SFTResult:
    """Train the receipt extractor on all but the held-out receipts of ``data``.

    ``limit`` keeps only the first N training receipts (for smoke runs and tests).
    """
    receipts = load_receipts(data)
    train, held = split_receipts(receipts, holdout, split_seed)
    if limit is not None:
        train = train[:limit]
    extra = {
        "data": str(data),
        "split_seed": split_seed,
        "holdout_ids": [r.id for r in held],
        "fields": list(FIELDS),
        "instruction": INSTRUCTION,
        "schema": RECEIPT_SCHEMA,
    }
    return train_sft(
        receipts_chat(train, f"{data}[train]"),
        output,
        settings=settings or SFTSettings(**EXTRACTOR_SETTINGS),
        config=config or TrainConfig(**EXTRACTOR_TRAIN),
        recipe="extractor",
        extra=extra,
        progress=progress,
        track=track,
    )


# ---------------------------------------------------------------------------------- code
def default_code_folder() -> Path:
    """The installed ``markdown_it`` package: real, MIT-licensed, consistent pure Python."""
    import importlib.util

    spec = importlib.util.find_spec("markdown_it")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("markdown_it is not installed; pass --source FOLDER")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass
class TextWindows:
    """Whole texts (files) cut into windows of ``max_length`` tokens; loss on every token."""

    texts: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def encode(self, tokenizer: Any, max_length: int) -> Tokenized:
        ids: list[list[int]] = []
        for text in self.texts:
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids.extend(
                tokens[i : i + max_length]
                for i in range(0, len(tokens), max_length)
                if len(tokens[i : i + max_length]) >= 2  # one token has nothing to predict
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return Tokenized(ids, [0] * len(ids), int(pad))


def read_code_folder(folder: str | Path, pattern: str = "*.py") -> dict[str, str]:
    """Non-empty files matching ``pattern`` under ``folder``, by sorted relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = {}
    for path in sorted(folder.rglob(pattern)):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text") from exc
        if text.strip():
            files[path.relative_to(folder).as_posix()] = text
    if len(files) < 3:
        raise DataError(
            f"{folder}: {len(files)} non-empty {pattern} files; need at least 3 to hold some out"
        )
    return files


def split_files(
    names: Sequence[str], test: float = 0.2, validation: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) file names: a seeded shuffle of the sorted names, at least one
    file in each held-out part."""
    if not (0 < test < 1 and 0 <= validation < 1 and test + validation < 1):
        raise ValueError(f"test and validation shares must be in (0, 1), got {test}, {validation}")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(order) * test))
    n_val = max(1, round(len(order) * validation)) if validation > 0 else 0
    held_test, held_val = order[:n_test], order[n_test : n_test + n_val]
    return sorted(order[n_test + n_val :]), sorted(held_val), sorted(held_test)


def train_code(
    source: str | Path | None,
    output: str | Path,
    *,
    pattern: str = "*.py",
    test: float = 0.2,
    validation: float = 0.1,
    split_seed: int = 0,
    settings: SFTSettings | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    track: bool = True,
) -> SFTResult:
    """Adapt the base model to a code folder; reports held-out files' perplexity before/after."""
    folder = Path(source) if source else default_code_folder()
    files = read_code_folder(folder, pattern)
    train, val, held = split_files(list(files), test, validation, split_seed)

    def windows(names: list[str], part: str) -> TextWindows:
        return TextWindows([files[n] for n in names], f"{folder}[{part}]")

    return train_sft(
        windows(train, "train"),
        output,
        validation=windows(val, "validation") if val else None,
        test=windows(held, "test"),
        settings=settings or SFTSettings(**CODE_SETTINGS),
        config=config or TrainConfig(**CODE_TRAIN),
        recipe="code",
        extra={
            "source": str(folder),
            "pattern": pattern,
            "split_seed": split_seed,
            "train_files": len(train),
            "validation_files": val,
            "test_files": held,
        },
        progress=progress,
        track=track,
    )

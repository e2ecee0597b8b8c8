"""Rules of the codebase that a reader would otherwise have to check by hand."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "agents").rglob("*.py")) + sorted((REPO / "finetune").rglob("*.py"))


def test_no_exception_drops_its_cause():
    # `raise X from None` hides the error that explains X; we chain (`from exc`) everywhere.
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\bfrom None\b", line)
    ]
    assert offenders == []


def test_code_and_docs_describe_capabilities_not_their_history():
    # The changelog (docs/dev-notes.md) is the one place for the history of the work.
    pattern = re.compile(r"\b[Ss]ession \d|\b[Ii]ssue \d")
    files = [*SOURCES, *REPO.glob("*.md"), *(REPO / "docs").glob("*.md"),
             *(REPO / "benchmarks").glob("*.py"), *(REPO / "tutorials").glob("*.ipynb"),
             *(REPO / "examples").glob("*.yaml"), *(REPO / "tests").rglob("*.py")]  # fmt: skip
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in files
        if path.name != "dev-notes.md" and path.name != "test_code_rules.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []

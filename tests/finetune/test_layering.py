"""Import layering: inference code (models, agents, patterns, specialists) never imports
training code. Import cycles are ``tests/test_import_graph.py``'s business.

Read from the source with ``ast`` (every import, also those inside functions), so a lazy import
cannot hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The application layer may train: the command line composes every part of the library, and a
# team spec's router is trained on first use. Models, agents, patterns and specialists may not.
APPLICATION_LAYER = {"slm_agents.cli", "slm_agents.cli_flywheel", "slm_agents.trained_router"}


def module_files() -> dict[str, Path]:
    """Module name -> file, for the folders installed as slm_agents and slm_agents.finetune."""
    files = {}
    for folder, package in (
        (ROOT / "agents", "slm_agents"),
        (ROOT / "finetune", "slm_agents.finetune"),
    ):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((package, *parts))] = path
    return files


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The slm_agents modules ``path`` imports; ``from pkg import mod`` counts as ``pkg.mod``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name.split(".")[0] == "slm_agents"}


def test_no_module_outside_finetune_imports_finetune():
    files = module_files()
    offenders = {
        name: sorted(m for m in imported_modules(path, set(files)) if is_finetune(m))
        for name, path in files.items()
        if not is_finetune(name) and name not in APPLICATION_LAYER
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def is_finetune(name: str) -> bool:
    return name == "slm_agents.finetune" or name.startswith("slm_agents.finetune.")

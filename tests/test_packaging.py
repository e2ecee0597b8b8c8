"""The distribution installs one import name, ``slm_agents``, and nothing that clashes.

Top-level ``agents`` and ``finetune`` would collide with other packages (the OpenAI Agents SDK
installs ``agents``), so the folders install as ``slm_agents`` and ``slm_agents.finetune``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"agents": "slm_agents", "finetune": "slm_agents.finetune"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, name in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *parts)))
    return found


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"slm_agents": "agents", "slm_agents.finetune": "finetune"}
    assert set(config["packages"]) == _packages_on_disk()


def test_installed_environment_has_no_top_level_agents_or_finetune(tmp_path):
    # Run outside the checkout: the repository root on sys.path would make its folders importable.
    code = (
        "import importlib.util as u, slm_agents, slm_agents.finetune.loop\n"
        "print(u.find_spec('agents'), u.find_spec('finetune'))\n"
        "print(slm_agents.__file__)\nprint(slm_agents.finetune.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "None None"
    assert Path(out[1]) == REPO / "agents" / "__init__.py"
    assert Path(out[2]) == REPO / "finetune" / "__init__.py"


@pytest.mark.slow
def test_wheel_holds_only_slm_agents(tmp_path):
    # Build from a copy of the tracked files: setuptools leaves build/ in the source tree, and a
    # stale build/ would put modules into the wheel that the checkout no longer has.
    source = tmp_path / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
         "pyproject.toml", "README.md", "agents", "finetune"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(lambda n: n and (REPO / n).is_file(), listed.split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels)]
    subprocess.run([*pip_wheel, str(source)], check=True, capture_output=True)
    [wheel] = wheels.glob("slm_agents-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"slm_agents"}
    assert "slm_agents/finetune/loop.py" in names and "slm_agents/models/hf.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slm-agents = slm_agents.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()

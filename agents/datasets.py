"""Where the bundled public data sets live: the repository's ``data/`` folder.

Tests, tutorials, examples, the demo and the benchmarks all find BANKING77, SROIE and HumanEval
through :func:`data_dir`, so a plain clone needs nothing beside it. ``SLM_AGENTS_DATA`` points
elsewhere (an installed wheel does not carry the data).
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY_DATA = Path(__file__).resolve().parent.parent / "data"


def data_dir() -> Path:
    """The data folder: ``$SLM_AGENTS_DATA``, else ``data/`` of this checkout."""
    root = Path(os.environ.get("SLM_AGENTS_DATA") or REPOSITORY_DATA)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {root} does not exist: set SLM_AGENTS_DATA to a folder holding "
            "banking77/, sroie/ and humaneval/ (the repository's data/ has them)"
        )
    return root


def dataset_file(*parts: str) -> Path:
    """A file inside the data folder, e.g. ``dataset_file("banking77", "train.csv")``."""
    path = data_dir().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the data folder {data_dir()}")
    return path

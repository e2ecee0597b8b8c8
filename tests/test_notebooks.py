"""Every tutorial notebook runs end to end (papermill, small parameters, MLflow in a tmp dir).

A notebook added to ``tutorials/`` is picked up automatically; give it small-data parameters
in ``SMALL`` (keyed by file name) and, optionally, text its outputs must show in ``EXPECT``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from slm_agents.models.sources import BUNDLED, bundled_path

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# Parameters that keep each notebook small enough for the test suite (merged over TRACKING_URI).
SMALL: dict[str, dict[str, object]] = {
    "01_quickstart.ipynb": {"N_TICKETS": 8, "N_REPLIES": 2, "MAX_NEW_TOKENS": 16},
    "02_patterns.ipynb": {"N_TICKETS": 16, "N_DEMO": 4, "MAX_NEW_TOKENS": 12},
    "03_finetune.ipynb": {
        "N_LABELS": 6,
        "N_TRAIN_PER_LABEL": 8,
        "N_TEST_PER_LABEL": 4,
        "EPOCHS": 2,
        "BATCH_SIZE": 8,
    },
    "04_support_desk.ipynb": {
        "N_TICKETS": 24,
        "TRAIN_PER_LABEL": 6,
        "MAX_NEW_TOKENS": 120,
        "CODER_TOKENS": 96,
    },
    "05_coding_agent.ipynb": {"N_PROBLEMS": 2, "MAX_REPAIRS": 1, "MAX_NEW_TOKENS": 48},
    "06_serving.ipynb": {"MAX_TOKENS": 12, "CONCURRENCY": [1, 4], "REQUESTS_PER_CLIENT": 1},
    "07_privacy.ipynb": {"N_TICKETS": 8},
    "08_flywheel.ipynb": {
        "N_TICKETS": 150,
        "N_RECEIPTS": 12,
        "N_CODING": 8,
        "NEW_TICKETS": 30,
        "BUDGET_MINUTES": 1.5,
    },
}
# Text that must appear in a notebook's outputs (evidence it did the real thing).
EXPECT: dict[str, list[str]] = {
    "01_quickstart.ipynb": ["token usage of one trace", "traces in run"],
    "02_patterns.ipynb": ["same labels as the local router: True", "spans match the path"],
    "03_finetune.ipynb": [
        "fine-tuned accuracy:",
        "registered model version: banking77-router v",
        "routes the same: True",
    ],
    "04_support_desk.ipynb": ["tickets sent to review", "queued:", "spans of one trace"],
    "05_coding_agent.ipynb": ["sandbox stopped an endless loop: ok=False", "pass@1 without repair"],
    "06_serving.ipynb": ["team answered department: cards", "latency p50", "server stopped: True"],
    "07_privacy.ipynb": [
        "values seen by the external tier: 0",
        "values in the MLflow store: 0",
        "values back in the answers: 32",
        "on_prem refused:",
    ],
    "08_flywheel.ipynb": [
        "adjusted Rand index against the hidden tasks",
        "SLM share on week 5: round 1",
        "trained again",
    ],
}

MISSING = [m.install for m in BUNDLED.values() if bundled_path(m) is None]


def output_text(nb: nbformat.NotebookNode) -> str:
    """All stream and text/plain outputs of the executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out:
                parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import papermill

    assert not MISSING, f"bundled model packages missing: {'; '.join(MISSING)} (make setup)"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Also for notebooks without a TRACKING_URI parameter: the kernel inherits the environment.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    executed = tmp_path / notebook.name
    before = {p.name for p in TUTORIALS.iterdir()}

    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={"TRACKING_URI": uri, **SMALL.get(notebook.name, {})},
        cwd=str(TUTORIALS),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=600,
    )

    nb = nbformat.read(executed, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "some cells did not run"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"error outputs: {[f'{e.ename}: {e.evalue}' for e in errors]}"
    text = output_text(nb)
    for expected in EXPECT.get(notebook.name, []):
        assert expected in text, f"{notebook.name} outputs lack {expected!r}"
    added = {p.name for p in TUTORIALS.iterdir()} - before
    assert not added, f"{notebook.name} wrote into tutorials/: {sorted(added)}"


def test_notebooks_are_committed_without_outputs():
    """Committed notebooks carry no outputs or execution counts (clean diffs, no stale results)."""
    for notebook in NOTEBOOKS:
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{notebook.name} has outputs; clear them"
                assert cell.execution_count is None, f"{notebook.name} has execution counts"
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"

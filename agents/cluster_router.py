"""ClusterRouter: send each request to the task (cluster) whose centroid it is nearest.

The flywheel finds tasks in logged calls by clustering their embeddings; a deployed team routes
a new request with the same centroids, embedded exactly as those calls were
(:func:`slm_agents.models.embedding.embed_texts`: 256-token windows averaged, unit rows). No
training: the centroids are the router.

The centroids file (JSON, written by :func:`save_centroids`)::

    {"model": "all-minilm-l6-v2", "labels": ["tickets", "receipts"],
     "centroids": [[0.01, ...], [0.03, ...]], "window": 256}

``labels[i]`` names the task of ``centroids[i]`` and is the router's output (the route label);
``model`` is the encoder the centroids were computed with, ``window`` its window in tokens. A
bad file is a :class:`CentroidsError` naming the file and what is wrong.

The output is the nearest label by cosine; the confidence is that cosine clipped to [0, 1] (a
request far from every task has a low one); ``meta["similarities"]`` holds every label's cosine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_agents.agent import Agent, merge, priced_step, split_valid
from slm_agents.models.embedding import WINDOW
from slm_agents.models.sources import DEFAULT_ENCODER
from slm_agents.pricing import DEFAULT_TABLE, PriceTable
from slm_agents.result import Result, Task, now

FIELDS = ("model", "labels", "centroids", "window")


class CentroidsError(ValueError):
    """A centroids file is unusable; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Centroids:
    """A centroids file, read and checked: one unit row of ``vectors`` per label."""

    path: Path
    model: str
    labels: list[str]
    vectors: Any  # numpy (k, d), unit rows
    window: int


def save_centroids(
    path: str | Path, labels: Sequence[str], centroids: Any, model: str = DEFAULT_ENCODER
) -> Path:
    """Write a centroids file (module doc); rows are stored unit length. Returns the path."""
    import numpy

    path = Path(path)
    vectors = numpy.asarray(centroids, dtype=numpy.float64)
    data = {"model": model, "labels": [str(x) for x in labels],
            "centroids": vectors.tolist(), "window": WINDOW}  # fmt: skip
    _check(path, data)  # never write a file the router would refuse
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    data["centroids"] = (vectors / norms).tolist()
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")
    return path


def read_centroids(path: str | Path) -> Centroids:
    """Read and check a centroids file; any problem is a :class:`CentroidsError` naming it."""
    import numpy

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CentroidsError(f"{path}: no such centroids file") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CentroidsError(f"{path}: not a JSON centroids file: {exc}") from exc
    _check(path, data)
    vectors = numpy.asarray(data["centroids"], dtype=numpy.float64)
    vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
    return Centroids(path, data["model"], list(data["labels"]), vectors, data["window"])


def _check(path: Path, data: Any) -> None:
    """Every problem of a centroids file's content, named; nothing is loaded."""
    if not isinstance(data, dict):
        raise CentroidsError(
            f"{path}: a centroids file is a JSON object with {list(FIELDS)}, "
            f"got a {type(data).__name__}"
        )
    missing = [f for f in FIELDS if f not in data]
    stray = sorted(set(data) - set(FIELDS))
    if missing or stray:
        what = f"missing {missing}" if missing else f"unknown fields {stray}"
        raise CentroidsError(f"{path}: {what}; a centroids file has exactly {list(FIELDS)}")
    model, labels, rows, window = (data[f] for f in FIELDS)
    if not isinstance(model, str) or not model.strip():
        raise CentroidsError(f"{path}: model must name the encoder, got {model!r}")
    if not isinstance(labels, list) or not labels:
        raise CentroidsError(f"{path}: labels must be a non-empty list of cluster names")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise CentroidsError(f"{path}: labels[{i}] must be a non-empty name, got {label!r}")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise CentroidsError(f"{path}: labels {repeated} appear more than once")
    if not isinstance(rows, list) or len(rows) != len(labels):
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise CentroidsError(
            f"{path}: centroids must be a list of one row per label ({len(labels)}), got {got}"
        )
    width = None
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not row:
            raise CentroidsError(f"{path}: centroids[{i}] must be a non-empty list of numbers")
        if width is not None and len(row) != width:
            raise CentroidsError(
                f"{path}: centroids[{i}] has {len(row)} values, centroids[0] has {width}"
            )
        width = len(row)
        bad = [x for x in row if isinstance(x, bool) or not isinstance(x, int | float)
               or not math.isfinite(x)]  # fmt: skip
        if bad:
            raise CentroidsError(f"{path}: centroids[{i}] holds {bad[0]!r}, not a finite number")
        if not any(row):
            raise CentroidsError(f"{path}: centroids[{i}] is all zeros (no direction)")
    if window != WINDOW:
        raise CentroidsError(
            f"{path}: window is {window!r}, but requests are embedded in windows of {WINDOW} "
            "tokens: centroids from other windows would not compare"
        )


class ClusterRouter(Agent):
    """Label each task with its nearest cluster (module doc).

    ``model``: the encoder; default the one the centroids file names. Another encoder than
    the file's is refused: its cosines would not compare with the centroids. The encoder loads
    here, so a file whose width does not fit it fails at build, not mid-job.
    """

    def __init__(
        self,
        name: str,
        centroids_file: str | Path,
        *,
        model: str | None = None,
        prices: PriceTable = DEFAULT_TABLE,
        batch_size: int = 64,
    ):
        from slm_agents.models.embedding import encoder

        self.name, self.prices, self.batch_size = name, prices, batch_size
        self.centroids = read_centroids(centroids_file)
        path, wanted = self.centroids.path, self.centroids.model
        if model is not None and Path(model).name != Path(wanted).name:
            raise CentroidsError(
                f"{path}: the centroids were computed with {wanted!r}, but agent {name!r} "
                f"embeds with {model!r}; their cosines would not compare (use model: {wanted})"
            )
        if model is None:  # a relative folder is relative to the file
            beside = path.parent / wanted
            model = str(beside) if beside.exists() else wanted
        self.model = model
        self.encoder = encoder(model)
        width = self.encoder.model.config.hidden_size
        if self.centroids.vectors.shape[1] != width:
            raise CentroidsError(
                f"{path}: centroids have {self.centroids.vectors.shape[1]} values a row, "
                f"but {model!r} embeds {width}"
            )

    @property
    def labels(self) -> list[str]:
        return list(self.centroids.labels)

    def run_batch(self, tasks: Sequence[str | Task]) -> list[Result]:
        from slm_agents.models.embedding import embed_texts

        valid, errors = split_valid(tasks, self.name)
        if not valid:
            return merge(len(tasks), errors, [])
        start = now()
        vectors = embed_texts([t.text for t in valid], model=self.model,
                              batch_size=self.batch_size)  # fmt: skip
        cosines = vectors.astype("float64") @ self.centroids.vectors.T
        end = now()
        labels = self.centroids.labels
        results = []
        for task, row in zip(valid, cosines, strict=True):
            best = int(row.argmax())
            confidence = min(max(float(row[best]), 0.0), 1.0)
            step = priced_step(
                self.name,
                self.encoder.name,
                self.prices,
                len(task.text.split()),  # word count, as classifier agents price their input
                output=labels[best],
                confidence=confidence,
                start_s=start,
                end_s=end,
                kind="classifier",
            )
            meta = {**task.meta, "similarities": dict(zip(labels, map(float, row), strict=True))}
            results.append(
                Result(task.id, labels[best], confidence, [step], end - start, None, meta=meta)
            )
        return merge(len(tasks), errors, results)


__all__ = ["CentroidsError", "Centroids", "ClusterRouter", "read_centroids", "save_centroids"]

"""Discover the recurring tasks in logged LLM calls, without labels.

Inputs are embedded with the bundled encoder (unit vectors, so Euclidean distance orders pairs
as cosine does) and grouped by k-means for every k in ``k_range``; each split is scored by its
silhouette (cosine). K-means rather than agglomerative clustering: it is linear in the number of
calls (agglomerative keeps all n² distances: 800 MB at 10,000 calls), seeded, so a seed gives
one answer, and its centroids assign new calls to a task later.

How k is chosen, and why (measured on slices of BANKING77 tickets, SROIE receipts and
HumanEval prompts, 15-100 calls a task, several seeds):

- k is at most n / :data:`CALLS_PER_TASK`: a task needs calls to learn from, and clusters of a
  few calls inflate the silhouette of splits that mean nothing (30 coding prompts alone score
  0.24 at k=11). Fewer than 2 x that many calls are one cluster.
- The smallest k whose silhouette is within :data:`PARSIMONY` of the best wins: past the true
  number of tasks, splitting a task further barely moves the score (tickets and receipts: 0.329
  at k=2, 0.331 at k=4), and a task split in two costs the flywheel more than two tasks kept
  apart by a little.
- Silhouette is undefined for k = 1, so one task is recognised by the best silhouette staying
  below :data:`SILHOUETTE_FLOOR`: two or three of these tasks score 0.24-0.46, one task alone
  (tickets, coding prompts) mostly 0.14-0.21. Receipts alone are the exception: many receipts
  of one shop are near-duplicates and form clusters of their own (up to 0.33); curation drops
  near-duplicates first.

Each cluster is named by its top TF-IDF terms (English stop words and numbers left out; terms
scored by how much more they weigh in the cluster than outside it), gets its output type
(:func:`~slm_agents.finetune.flywheel.output_types.detect_output_type`), and its share of the
calls and of the LLM cost.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slm_agents.finetune.flywheel.output_types import OutputType, detect_output_type

SILHOUETTE_FLOOR = 0.22  # below this best score, the calls are one task
PARSIMONY = 0.02  # the smallest k scoring within this of the best silhouette wins
CALLS_PER_TASK = 10  # k is at most n / this: a task needs calls to learn from, and small
# clusters inflate the silhouette of a split that means nothing
SILHOUETTE_SAMPLE = 2000  # silhouette is O(n²): score a seeded sample of this many calls
NAME_TERMS = 3  # terms in a cluster's name
TOP_TERMS = 8  # terms reported per cluster
EXAMPLES = 3  # example inputs per cluster: those nearest its centroid
EXAMPLE_CHARS = 300  # example inputs are cut to this length in the report
TERM_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"  # words of two letters or more, no numbers
SHORT_ANSWER = 64  # characters: a one-line answer this short is label-like (output_types.py)


@dataclass
class Cluster:
    """One discovered task: who is in it, what it is called, what it answers, what it costs."""

    id: int
    name: str
    terms: list[str]
    size: int
    call_share: float
    cost_share: float | None  # None when no costs were given or they sum to zero
    output_type: OutputType
    examples: list[str]
    members: list[int]  # indices into the calls, ascending
    shape: str | None = None  # the shape of its members' answers (answer_shape), most common

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "id": self.id,
            "name": self.name,
            "terms": list(self.terms),
            "size": self.size,
            "call_share": self.call_share,
            "cost_share": self.cost_share,
            "output_type": self.output_type.to_dict(),
            "examples": list(self.examples),
            "members": list(self.members),
        }


@dataclass
class Clustering:
    """All clusters, the cluster of every call, and how k was chosen."""

    clusters: list[Cluster]
    labels: list[int]  # the cluster id of each call, in call order
    k: int
    reason: str
    silhouettes: dict[int, float]  # k -> silhouette, for every k tried
    seed: int
    total_cost: float | None
    centroids: Any = field(repr=False)  # numpy (k, d), unit rows: assign new calls with these

    def assign(self, vectors: Any, outputs: Sequence[Any] | None = None) -> list[int]:
        """The cluster id of each new call's embedding: its nearest centroid by cosine.

        With the calls' ``outputs`` (logged calls have answers; a request being routed does
        not), only clusters whose answers have the call's shape are candidates, as in
        :func:`cluster_calls`; a shape no cluster has falls back to every cluster.
        """
        import numpy

        vectors = _unit_rows(numpy.asarray(vectors, dtype=numpy.float64), "vectors")
        similarity = vectors @ self.centroids.T
        if outputs is not None:
            if len(outputs) != len(similarity):
                raise ValueError(f"{len(similarity)} vectors but {len(outputs)} outputs")
            shapes = numpy.array([c.shape for c in self.clusters], dtype=object)
            for row, output in enumerate(outputs):
                other = shapes != answer_shape(output)
                if not other.all():
                    similarity[row, other] = -numpy.inf
        return [int(i) for i in numpy.argmax(similarity, axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "reason": self.reason,
            "method": "kmeans",
            "silhouettes": {str(k): score for k, score in self.silhouettes.items()},
            "seed": self.seed,
            "n_calls": len(self.labels),
            "total_cost": self.total_cost,
            "clusters": [cluster.to_dict() for cluster in self.clusters],
            "labels": list(self.labels),
            "centroids": [[float(x) for x in row] for row in self.centroids],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clustering:
        """Read back what :meth:`to_dict` wrote (a later run keeps the clusters it found)."""
        import numpy

        clusters = []
        for c in data["clusters"]:
            output_type = OutputType.from_dict(c["output_type"])
            shape = c.get("shape") or _shape_of_type(output_type)  # older files have none
            clusters.append(Cluster(**{**c, "output_type": output_type, "shape": shape}))
        return cls(
            clusters=clusters,
            labels=list(data["labels"]),
            k=int(data["k"]),
            reason=data["reason"],
            silhouettes={int(k): float(v) for k, v in data["silhouettes"].items()},
            seed=int(data["seed"]),
            total_cost=data["total_cost"],
            centroids=numpy.asarray(data["centroids"], dtype=numpy.float64),
        )


def cluster_calls(
    inputs: list[str],
    outputs: list,
    costs: list[float] | None = None,
    *,
    vectors: Any = None,
    k_range: tuple[int, int] = (2, 12),
    seed: int = 0,
) -> Clustering:
    """Group calls into tasks (module doc); ``vectors`` skips embedding (n rows, any width)."""
    import numpy

    _check_calls(inputs, outputs, costs, k_range)
    n = len(inputs)
    if vectors is None:
        from slm_agents.finetune.flywheel.embed import embed_texts

        vectors = embed_texts(list(inputs))
    vectors = _unit_rows(numpy.asarray(vectors, dtype=numpy.float64), "vectors")
    if vectors.shape[0] != n:
        raise ValueError(f"vectors has {vectors.shape[0]} rows for {n} calls")

    labels, k, reason, silhouettes = _split_by_shape(vectors, outputs, k_range, seed)
    labels = _ids_by_size(labels)
    k = int(labels.max()) + 1
    centroids = numpy.stack([vectors[labels == c].mean(axis=0) for c in range(k)])
    centroids = _unit_rows(centroids, "centroids")
    terms = _top_terms(inputs, labels, k)
    names = ["-".join(t[:NAME_TERMS]) or f"cluster-{c}" for c, t in enumerate(terms)]
    return _grouped(vectors, labels, centroids, names, terms, inputs, outputs, costs,
                    k=k, reason=reason, silhouettes=silhouettes, seed=seed)  # fmt: skip


def regroup(
    previous: Clustering,
    inputs: list[str],
    outputs: list,
    costs: list[float] | None = None,
    *,
    vectors: Any = None,
) -> Clustering:
    """``previous``'s clusters (ids, names, centroids) over a new set of calls.

    A later flywheel run keeps the tasks it found, so a cluster's specialist still has its
    task: each call goes to the nearest centroid among the clusters answered as it is
    (:meth:`Clustering.assign` with outputs), and sizes, shares, output types and examples
    are recounted. A cluster no call reaches keeps its output type, with size 0.
    """
    import numpy

    _check_calls(inputs, outputs, costs, (2, 2))
    if vectors is None:
        from slm_agents.finetune.flywheel.embed import embed_texts

        vectors = embed_texts(list(inputs))
    vectors = _unit_rows(numpy.asarray(vectors, dtype=numpy.float64), "vectors")
    labels = numpy.asarray(previous.assign(vectors, outputs), dtype=int)
    reason = f"kept the {previous.k} clusters of the previous run ({previous.reason})"
    return _grouped(
        vectors, labels, previous.centroids, [c.name for c in previous.clusters],
        [c.terms for c in previous.clusters], inputs, outputs, costs, k=previous.k,
        reason=reason, silhouettes=previous.silhouettes, seed=previous.seed,
        kept_types={c.id: c.output_type for c in previous.clusters},
        kept_shapes={c.id: c.shape for c in previous.clusters},
    )  # fmt: skip


def _grouped(
    vectors: Any,
    labels: Any,
    centroids: Any,
    names: list[str],
    terms: list[list[str]],
    inputs: Sequence[str],
    outputs: Sequence[Any],
    costs: Sequence[float] | None,
    *,
    k: int,
    reason: str,
    silhouettes: dict[int, float],
    seed: int,
    kept_types: dict[int, OutputType] | None = None,
    kept_shapes: dict[int, str | None] | None = None,
) -> Clustering:
    """The Clustering of calls labelled ``labels``: each cluster's members, shares and type."""
    import numpy

    kept_shapes = kept_shapes or {}
    n = len(inputs)
    total_cost = float(sum(costs)) if costs is not None else None
    clusters = []
    for c in range(k):
        members = numpy.flatnonzero(labels == c)
        nearest = members[numpy.argsort(-(vectors[members] @ centroids[c]), kind="stable")]
        cost_share = None
        if costs is not None and total_cost > 0:
            cost_share = float(sum(costs[i] for i in members)) / total_cost
        if len(members) or not kept_types:
            output_type = detect_output_type([outputs[i] for i in members])
        else:
            output_type = kept_types[c]
        clusters.append(
            Cluster(
                id=c,
                name=names[c],
                terms=terms[c],
                size=len(members),
                call_share=len(members) / n,
                cost_share=cost_share,
                output_type=output_type,
                examples=[_cut(inputs[i]) for i in nearest[:EXAMPLES]],
                members=[int(i) for i in members],
                shape=_modal_shape([outputs[i] for i in members], kept_shapes.get(c)),
            )
        )
    if kept_types is None:
        _make_names_unique(clusters)
    return Clustering(
        clusters=clusters,
        labels=[int(c) for c in labels],
        k=k,
        reason=reason,
        silhouettes=silhouettes,
        seed=seed,
        total_cost=total_cost,
        centroids=centroids,
    )


def _check_calls(
    inputs: Sequence[str],
    outputs: Sequence[Any],
    costs: Sequence[float] | None,
    k_range: tuple[int, int],
) -> None:
    if isinstance(inputs, str):
        raise TypeError("inputs is a list of call texts; wrap a single text in [ ]")
    if len(inputs) == 0:
        raise ValueError("no calls to cluster: inputs is empty")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs: one output per call")
    if len(inputs) < 2:
        raise ValueError(f"clustering needs at least 2 calls, got {len(inputs)}")
    for i, text in enumerate(inputs):
        if not isinstance(text, str) or not text.strip():
            kind = "empty" if isinstance(text, str) else f"a {type(text).__name__}, not text"
            raise ValueError(f"input {i} is {kind}")
    for i, output in enumerate(outputs):
        if output is None:
            raise ValueError(f"call {i} has no output: drop calls without outputs first")
    if costs is not None:
        if len(costs) != len(inputs):
            raise ValueError(f"{len(inputs)} calls but {len(costs)} costs: one cost per call")
        for i, cost in enumerate(costs):
            if isinstance(cost, bool) or not isinstance(cost, int | float):
                raise TypeError(f"cost {i} is a {type(cost).__name__}, not a number")
            if not math.isfinite(cost) or cost < 0:
                raise ValueError(f"cost {i} is {cost!r}; costs are finite and >= 0")
    low, high = k_range
    if not (isinstance(low, int) and isinstance(high, int) and 2 <= low <= high):
        raise ValueError(f"k_range must be (low, high) with 2 <= low <= high, got {k_range!r}")


def _unit_rows(vectors: Any, what: str) -> Any:
    import numpy

    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"{what} must be a 2-d array (one row per call), got {vectors.shape}")
    if not numpy.isfinite(vectors).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} row {int(numpy.flatnonzero(norms == 0)[0])} is all zeros")
    return vectors / norms


def _choose_k(vectors: Any, k_range: tuple[int, int], seed: int):
    """Labels, k, the reason, and the silhouette of every k tried."""
    import numpy
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = vectors.shape[0]
    distinct = len(numpy.unique(vectors.round(6), axis=0))
    high = min(k_range[1], n // CALLS_PER_TASK, distinct)
    one = numpy.zeros(n, dtype=int)
    if high < k_range[0]:
        reason = (
            f"one cluster: {n} calls ({distinct} distinct) are too few to split into "
            f"{k_range[0]} tasks of {CALLS_PER_TASK} calls or more on average"
        )
        return one, 1, reason, {}

    sample = min(n, SILHOUETTE_SAMPLE)
    silhouettes: dict[int, float] = {}
    splits = {}
    for k in range(k_range[0], high + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)
        score = silhouette_score(
            vectors, labels, metric="cosine", sample_size=sample, random_state=seed
        )
        silhouettes[k], splits[k] = float(score), labels
    best_k = max(silhouettes, key=silhouettes.get)
    best = silhouettes[best_k]
    if best < SILHOUETTE_FLOOR:
        reason = (
            f"one cluster: the best silhouette ({best:.3f} at k={best_k}) is below "
            f"{SILHOUETTE_FLOOR}, so no split separates distinct tasks"
        )
        return one, 1, reason, silhouettes
    k = min(k for k, score in silhouettes.items() if score >= best - PARSIMONY)
    reason = (
        f"k={k}: the smallest k in {k_range[0]}..{high} within {PARSIMONY} of the best "
        f"silhouette ({best:.3f} at k={best_k}; {silhouettes[k]:.3f} at k={k})"
    )
    return splits[k], k, reason, silhouettes


def answer_shape(output: Any) -> str:
    """The shape of one logged answer: ``json:KEYS`` (an object), ``short`` (one line of at
    most :data:`SHORT_ANSWER` characters, as labels are) or ``text``."""
    if isinstance(output, str) and output.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            output = json.loads(output)
    if isinstance(output, dict):
        return "json:" + ",".join(sorted(map(str, output)))
    text = output if isinstance(output, str) else json.dumps(output)
    return "short" if "\n" not in text.strip() and len(text.strip()) <= SHORT_ANSWER else "text"


def _shape_of_type(output_type: OutputType) -> str | None:
    """The answer shape an output type implies, for state files written before clusters kept
    theirs: labels are short, extraction is JSON of its keys; free text may be either (None)."""
    if output_type.kind == "classification":
        return "short"
    if output_type.kind == "extraction" and output_type.keys:
        return "json:" + ",".join(sorted(output_type.keys))
    return None


def _modal_shape(outputs: Sequence[Any], default: str | None = None) -> str | None:
    if not outputs:
        return default
    shapes = [answer_shape(o) for o in outputs]
    return max(sorted(set(shapes)), key=shapes.count)


def _split_by_shape(vectors: Any, outputs: Sequence[Any], k_range: tuple[int, int], seed: int):
    """Labels, k, the reason and the silhouettes: calls grouped by the shape of their answers
    first, then each group split by its inputs (:func:`_choose_k`).

    Why the answers first: tasks differ in what comes back (a label, an object of fixed keys,
    free text) far more reliably than in how their inputs embed. Measured on a stream of 1,909
    BANKING77 tickets, 302 SROIE receipts and 61 HumanEval prompts: k-means on the inputs
    alone split the tickets by topic and merged the coding prompts into them (adjusted Rand
    index 0.13, k=7), because 77 intents spread the tickets wider than the tasks lie apart;
    answer shapes first, then the same rule within each shape, recovered the tasks (0.98).
    A specialist is chosen per output type anyway, so calls of two shapes are never one task.
    """
    import numpy

    shapes = [answer_shape(o) for o in outputs]
    groups = sorted(set(shapes), key=lambda g: (-shapes.count(g), g))
    if len(groups) == 1:
        return _choose_k(vectors, k_range, seed)
    labels = numpy.zeros(len(shapes), dtype=int)
    reasons, silhouettes, k = [], {}, 0
    for group in groups:
        rows = numpy.array([i for i, shape in enumerate(shapes) if shape == group])
        if len(rows) >= 2:
            part, part_k, why, scores = _choose_k(vectors[rows], k_range, seed)
        else:
            part, part_k, why, scores = numpy.zeros(1, dtype=int), 1, "one call", {}
        labels[rows] = part + k
        k += part_k
        silhouettes = silhouettes or scores  # the largest group's, for the report
        reasons.append(f"{len(rows)} calls answered {group}: {why}")
    reason = f"k={k}: answers of {len(groups)} shapes, each split by its inputs; " + "; ".join(
        reasons
    )
    return labels, k, reason, silhouettes


def _ids_by_size(labels: Any) -> Any:
    """Renumber clusters: largest first, ties by earliest call, so ids read the same each run."""
    import numpy

    found = sorted(
        set(labels.tolist()),
        key=lambda c: (-int((labels == c).sum()), int(numpy.argmax(labels == c))),
    )
    mapping = {old: new for new, old in enumerate(found)}
    return numpy.array([mapping[c] for c in labels.tolist()], dtype=int)


def _top_terms(inputs: Sequence[str], labels: Any, k: int) -> list[list[str]]:
    """Per cluster, the terms whose mean TF-IDF weight exceeds theirs outside it the most."""
    import numpy
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        stop_words="english", token_pattern=TERM_PATTERN, sublinear_tf=True
    )
    try:
        weights = vectorizer.fit_transform(inputs)
    except ValueError:  # no term left (numbers, stop words only): names fall back to ids
        return [[] for _ in range(k)]
    vocabulary = vectorizer.get_feature_names_out()
    terms = []
    for c in range(k):
        inside = numpy.asarray(weights[labels == c].mean(axis=0)).ravel()
        outside = (
            numpy.asarray(weights[labels != c].mean(axis=0)).ravel() if k > 1 else 0.0 * inside
        )
        score = inside - outside
        order = numpy.argsort(-score, kind="stable")
        terms.append([str(vocabulary[i]) for i in order[:TOP_TERMS] if score[i] > 0])
    return terms


def _make_names_unique(clusters: list[Cluster]) -> None:
    seen: dict[str, int] = {}
    for cluster in clusters:
        seen[cluster.name] = seen.get(cluster.name, 0) + 1
    for cluster in clusters:
        if seen[cluster.name] > 1:
            cluster.name = f"{cluster.name}-{cluster.id}"


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"

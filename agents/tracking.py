"""MLflow tracking that fails open: runs, params, buffered metrics, artifacts, model-call spans.

Why a wrapper: a broken or unreachable tracking store must never break an agent. Every MLflow
call goes through :meth:`Tracker._safe`; the first failure warns once (``TrackingWarning``) and
turns tracking off for the rest of the process, and the work goes on.

Where runs go: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<working dir>/mlflow.db`` (MLflow's
own default, made absolute so a notebook that changes directory keeps one store). Experiments we
create on a sqlite store keep their artifacts in ``mlartifacts/`` beside the database file.

Spans: model backends wrap each batched call in :func:`model_call`. It records a span (type LLM
for generation, CLASSIFIER for classification) carrying batch size, options, token usage and
errors, but only while tracking is active: inside :meth:`Tracker.run` or after :func:`enable`.
Outside those it is a no-op and MLflow is never imported, so ``import slm_agents`` stays light.

Metrics: ``log_metrics`` buffers and sends one ``log_batch`` per 200 values or at run end
(one synchronous ``log_metric`` on sqlite costs ~40 ms).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FLUSH_EVERY = 200
PARAM_VALUE_LIMIT = 6000  # MLflow's limit on one param value


class TrackingWarning(UserWarning):
    """MLflow failed; tracking is off for this process, the work continues."""


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _artifact_root(tracking_uri: str) -> str | None:
    """Keep a sqlite store's artifacts beside its database file.

    MLflow's default for sqlite is ``./mlruns`` of whatever the working directory is at the
    time, which scatters trace data over notebooks' and tests' folders.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None  # servers and file stores choose their own artifact location
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlartifacts").resolve().as_uri()


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts and dataclasses to dotted MLflow params (``options.max_new_tokens``)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        return {prefix.rstrip("."): str(config)[:PARAM_VALUE_LIMIT]}
    flat: dict[str, str] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


class _NullSpan:
    """Stands in for a span when tracking is off, so callers never branch."""

    def record(self, results: list[Any]) -> None:
        pass


class _ModelSpan:
    def __init__(self, span: Any, tracker: Tracker):
        self._span, self._tracker = span, tracker

    def record(self, results: list[Any]) -> None:
        """Attach usage, confidence and errors of a batch of Generation/Prediction results."""

        def attach() -> None:
            usage = [r.usage for r in results if getattr(r, "usage", None) is not None]
            errors = [r.error for r in results if r.error]
            attrs: dict[str, Any] = {"n_errors": len(errors)}
            if usage:
                prompt = sum(u.prompt_tokens for u in usage)
                completion = sum(u.completion_tokens for u in usage)
                attrs["mlflow.chat.tokenUsage"] = {
                    "input_tokens": prompt,
                    "output_tokens": completion,
                    "total_tokens": prompt + completion,
                }
            self._span.set_attributes(attrs)
            self._span.set_outputs(
                [
                    {"error": r.error}
                    if r.error
                    else {
                        "output": getattr(r, "text", None) or getattr(r, "label", None),
                        "confidence": round(r.confidence, 4),
                    }
                    for r in results
                ]
            )

        self._tracker._safe(attach)


class Tracker:
    """One process's view of MLflow. Use the module-level functions for the default one."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "slm-agents"):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.broken = False
        self.spans_enabled = False
        self.model_spans = True  # a trace per model call; jobs turn it off (they trace requests)
        self._ready = False
        self._buffer: list[Any] = []
        self._run_id: str | None = None

    # -------------------------------------------------------------- fail-open core
    def _safe(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any MLflow or store failure
            self.broken = True
            warnings.warn(
                f"MLflow tracking to {self.tracking_uri} failed and is now off for this process "
                f"({type(exc).__name__}: {exc}); the work continues untracked",
                TrackingWarning,
                stacklevel=3,
            )
            return None

    def _setup(self) -> bool:
        if self._ready or self.broken:
            return self._ready

        def connect() -> None:
            import mlflow

            self.tracking_uri = self.tracking_uri or default_tracking_uri()
            if self.tracking_uri.startswith(("http://", "https://")):
                # An unreachable server should cost seconds, not minutes of retries.
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
            mlflow.set_tracking_uri(self.tracking_uri)
            if mlflow.get_experiment_by_name(self.experiment) is None:
                mlflow.create_experiment(
                    self.experiment, artifact_location=_artifact_root(self.tracking_uri)
                )
            mlflow.set_experiment(self.experiment)
            self._ready = True

        self._safe(connect)
        return self._ready

    @property
    def active(self) -> bool:
        return not self.broken and (self.spans_enabled or self._run_id is not None)

    # -------------------------------------------------------------- runs
    @contextlib.contextmanager
    def run(
        self,
        name: str | None = None,
        params: Any = None,
        tags: dict[str, str] | None = None,
        resume: str | None = None,
    ) -> Iterator[str | None]:
        """Open an MLflow run (or reopen the run ``resume``); yields its id (None when tracking
        is broken). A resumed job reopens its run so the whole job stays one run."""
        import mlflow  # imported here, not at module level: keeps `import slm_agents` light

        if resume is not None and self._setup():
            try:
                mlflow.get_run(resume)
            except Exception:  # the run is gone (another store?): start a new one
                resume = None
        if resume is not None:
            started = self._safe(mlflow.start_run, run_id=resume)
        else:
            started = self._setup() and self._safe(mlflow.start_run, run_name=name, tags=tags)
        if not started:
            yield None
            return
        self._run_id = started.info.run_id
        if params is not None:
            self.log_params(params)
        status = "FINISHED"
        try:
            yield self._run_id
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self.flush()
            self._safe(mlflow.end_run, status=status)
            self._run_id = None

    def log_params(self, config: Any) -> None:
        import mlflow

        if self._run_id is not None:
            self._safe(mlflow.log_params, flatten(config))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer metrics; they go to MLflow in one batch every FLUSH_EVERY values or at run end."""
        if self._run_id is None or self.broken:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step or 0) for k, v in metrics.items())
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics and wait for traces MLflow is still exporting in the background."""
        if not self._ready:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        batch, self._buffer = self._buffer, []
        if batch and self._run_id is not None:
            self._safe(MlflowClient().log_batch, self._run_id, metrics=batch)
        self._safe(mlflow.flush_trace_async_logging)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        if self._run_id is not None:
            log = mlflow.log_artifacts if Path(path).is_dir() else mlflow.log_artifact
            self._safe(log, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import mlflow

        if self._run_id is not None:
            self._safe(mlflow.log_dict, data, artifact_file)

    def register_model(self, name: str, artifact_path: str) -> str | None:
        """Register an artifact folder of the current run as a new version of model ``name``.

        Returns the version number (None when not tracking). Any folder works: a LoRA adapter
        directory is registered as it is, without an MLflow "flavor".
        """
        if self._run_id is None:
            return None
        from mlflow.tracking import MlflowClient

        def register() -> str:
            client = MlflowClient()
            if not client.search_registered_models(filter_string=f"name = '{name}'"):
                client.create_registered_model(name)
            source = f"{client.get_run(self._run_id).info.artifact_uri}/{artifact_path}"
            return str(client.create_model_version(name, source, run_id=self._run_id).version)

        return self._safe(register)

    # -------------------------------------------------------------- spans
    @contextlib.contextmanager
    def span(
        self, name: str, span_type: str = "UNKNOWN", inputs: Any = None, attributes: Any = None
    ) -> Iterator[Any]:
        """A traced block; a root span becomes a trace linked to the active run."""
        if not self.active or not self._setup():
            yield _NullSpan()
            return
        import mlflow

        manager = self._safe(mlflow.start_span, name=name, span_type=span_type)
        span = manager and self._safe(manager.__enter__)
        if span is None:
            yield _NullSpan()
            return
        self._safe(span.set_inputs, inputs)
        self._safe(span.set_attributes, attributes or {})
        try:
            yield span
        except BaseException as exc:
            self._safe(manager.__exit__, type(exc), exc, exc.__traceback__)
            raise
        self._safe(manager.__exit__, None, None, None)


_default = Tracker()


def get_tracker() -> Tracker:
    return _default


def configure(tracking_uri: str | None = None, experiment: str = "slm-agents") -> Tracker:
    """Point the default tracker somewhere else (a fresh Tracker; any old failure is forgotten)."""
    global _default
    _default = Tracker(tracking_uri, experiment)
    return _default


def enable() -> None:
    """Trace model calls even outside a run (each call becomes its own trace)."""
    _default.spans_enabled = True


def disable() -> None:
    _default.spans_enabled = False


def flush() -> None:
    """Make everything logged so far visible to readers (metrics buffer, async traces)."""
    _default.flush()


def run(
    name: str | None = None,
    params: Any = None,
    tags: dict[str, str] | None = None,
    resume: str | None = None,
):
    return _default.run(name, params, tags, resume)


def log_params(config: Any) -> None:
    _default.log_params(config)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _default.log_metrics(metrics, step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    _default.log_artifact(path, artifact_path)


def log_dict(data: Any, artifact_file: str) -> None:
    _default.log_dict(data, artifact_file)


def register_model(name: str, artifact_path: str) -> str | None:
    return _default.register_model(name, artifact_path)


def span(name: str, span_type: str = "UNKNOWN", inputs: Any = None, attributes: Any = None):
    return _default.span(name, span_type, inputs, attributes)


@contextlib.contextmanager
def without_model_spans() -> Iterator[None]:
    """No trace per model call inside this block: for jobs that trace each request instead
    (``trace_results``), whose spans already carry every agent call."""
    before, _default.model_spans = _default.model_spans, False
    try:
        yield
    finally:
        _default.model_spans = before


@contextlib.contextmanager
def model_call(model: str, operation: str, inputs: list[Any], options: Any = None) -> Iterator[Any]:
    """The span a backend opens around one batched call; ``.record(results)`` adds usage.

    The span's inputs are the prompts or texts (each cut to 500 characters) and the options.
    """
    tracker = _default
    if not tracker.active or not tracker.model_spans:
        yield _NullSpan()
        return
    span_type = "LLM" if operation == "generate" else "CLASSIFIER"
    attrs = {"model": model, "batch_size": len(inputs)}
    shown = {"inputs": [str(x)[:500] for x in inputs], "options": options}
    with tracker.span(f"{model}.{operation}", span_type, shown, attrs) as span:
        yield _ModelSpan(span, tracker) if not isinstance(span, _NullSpan) else span


SPAN_TYPES = {"llm": "LLM", "classifier": "CLASSIFIER", "function": "TOOL", "decision": "CHAIN"}


def trace_results(
    results: list[Any], tasks: list[Any] | None = None, name: str = "request"
) -> None:
    """One trace per request: a root span, and a child span per Step of its path.

    Steps carry wall-clock start and end times, so spans are placed where they ran, in this
    process or in a Ray actor: the actor never needs MLflow, and nothing crosses a process
    boundary but the Result. Sets each Result's ``trace_id``. No-op when tracking is inactive.
    """
    tracker = _default
    if not tracker.active or not tracker._setup():
        return
    import mlflow

    def to_ns(seconds: float) -> int:
        return int(seconds * 1e9)

    def one(result: Any, task: Any) -> None:
        if not result.path:
            return
        start = min(s.start_s for s in result.path)
        end = max(s.end_s for s in result.path)
        root = mlflow.start_span_no_context(
            name,
            span_type="AGENT",
            inputs={"task": getattr(task, "text", task)} if task is not None else None,
            attributes={"task_id": result.task_id, "cost": result.cost, "agents": result.agents},
            start_time_ns=to_ns(start),
        )
        for step in result.path:
            child = mlflow.start_span_no_context(
                step.agent,
                span_type=SPAN_TYPES.get(step.kind, "UNKNOWN"),
                parent_span=root,
                attributes={
                    "model": step.model or "",
                    "confidence": step.confidence,
                    "cost": step.cost,
                    "decision": step.decision,
                    "mlflow.chat.tokenUsage": {
                        "input_tokens": step.prompt_tokens,
                        "output_tokens": step.completion_tokens,
                        "total_tokens": step.prompt_tokens + step.completion_tokens,
                    },
                },
                start_time_ns=to_ns(step.start_s),
            )
            child.end(
                outputs=str(step.output)[:2000],
                status="ERROR" if step.error else "OK",
                end_time_ns=to_ns(step.end_s),
            )
        root.end(
            outputs={"output": str(result.output)[:2000], "error": result.error},
            status="ERROR" if result.error else "OK",
            end_time_ns=to_ns(end),
        )
        result.trace_id = root.trace_id

    for i, result in enumerate(results):
        tracker._safe(one, result, tasks[i] if tasks is not None else None)

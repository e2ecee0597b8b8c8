"""The store facade: runs, params, buffered metrics, artifacts and the model registry, fail-open.

Why a wrapper: a broken or unreachable tracking store must never break an agent. Every MLflow
call goes through :meth:`Tracker.fail_open`; the first store failure (see
:func:`~slm_agents.tracking.failures.store_errors`) warns once with its cause
(``TrackingWarning``) and turns tracking off for the rest of the process, and the work goes on.
Any other exception is a bug in our code or the caller's and raises.

Where runs go: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<working dir>/mlflow.db`` (MLflow's
own default, made absolute so a notebook that changes directory keeps one store). Experiments we
create on a sqlite store keep their artifacts in ``mlartifacts/`` beside the database file.

What is stored is redacted: span inputs, outputs and errors, and params pass through
:meth:`Tracker.stored`, which replaces personal data with placeholders
(``slm_agents.privacy.store_text``) unless ``store_raw`` is set (a team spec's
``privacy: {store_raw: true}``, or ``configure(store_raw=True)``).

Metrics: ``log_metrics`` buffers and sends one ``log_batch`` per 200 values or at run end
(one synchronous ``log_metric`` on sqlite costs ~40 ms).

The module-level functions act on the process's default tracker (:func:`get_tracker`), which
:func:`configure` replaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from slm_agents.tracking.failures import describe, mask_secrets, store_errors

FLUSH_EVERY = 200
PARAM_VALUE_LIMIT = 6000  # MLflow's limit on one param value

T = TypeVar("T")


class TrackingWarning(UserWarning):
    """The tracking store failed; tracking is off for this process, the work continues."""


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


class Tracker:
    """One process's view of MLflow. Use the module-level functions for the default one."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "slm-agents",
        store_raw: bool = False,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.store_raw = store_raw  # keep raw text in the store (default: redacted)
        self.broken = False
        self.spans_enabled = False
        self.model_spans = True  # a trace per model call; jobs turn it off (they trace requests)
        self._ready = False
        self._buffer: list[Any] = []
        self._run_id: str | None = None

    def stored(self, text: str) -> str:
        """``text`` as the store may keep it: redacted, unless ``store_raw``."""
        if self.store_raw:
            return text
        from slm_agents.privacy import store_text

        return store_text(text)

    # -------------------------------------------------------------- fail-open core
    def fail_open(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``, or None once the store has failed.

        Only store failures are absorbed (the first one warns, naming its cause, and turns
        tracking off); any other exception is a bug and propagates, tracking left as it was.
        """
        if self.broken:
            return None
        try:
            return fn(*args, **kwargs)
        except store_errors() as exc:
            self.broken = True
            where = mask_secrets(str(self.tracking_uri or default_tracking_uri()))
            operation = getattr(fn, "__name__", type(fn).__name__)
            warnings.warn(
                f"MLflow tracking to {where} failed in {operation} ({describe(exc)}); "
                "tracking is off for this process and the work continues untracked",
                TrackingWarning,
                stacklevel=3,
            )
            return None

    def connect(self) -> bool:
        """Set the tracking URI and experiment once; False when the store is unusable."""
        if self._ready or self.broken:
            return self._ready

        def connect_to_store() -> None:
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

        self.fail_open(connect_to_store)
        return self._ready

    @property
    def active(self) -> bool:
        """Whether spans are recorded now: inside a run, or after ``enable()``."""
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
        is broken). A resumed job reopens its run so the whole job stays one run.

        Opened inside another run (a classifier trained inside a benchmark's run), it is a
        nested run of that one, and the outer run is current again when it ends.
        """
        import mlflow  # imported here, not at module level: keeps `import slm_agents` light

        if resume is not None and self.connect():
            try:
                mlflow.get_run(resume)
            except store_errors():  # the run is gone (another store?): start a new one
                resume = None
        outer = self._run_id
        if outer is not None:
            self.flush()  # the outer run's buffered metrics belong to the outer run
        # nested=True: a child of the active run if there is one, else an ordinary run
        if resume is not None:
            started = self.fail_open(mlflow.start_run, run_id=resume, nested=True)
        else:
            started = self.connect() and self.fail_open(
                mlflow.start_run, run_name=name, tags=tags, nested=True
            )
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
            self.fail_open(mlflow.end_run, status=status)
            self._run_id = outer

    def log_params(self, config: Any) -> None:
        import mlflow

        if self._run_id is not None:
            params = {key: self.stored(value) for key, value in flatten(config).items()}
            self.fail_open(mlflow.log_params, params)

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
            self.fail_open(MlflowClient().log_batch, self._run_id, metrics=batch)
        self.fail_open(mlflow.flush_trace_async_logging)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        if self._run_id is not None:
            log = mlflow.log_artifacts if Path(path).is_dir() else mlflow.log_artifact
            self.fail_open(log, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import mlflow

        if self._run_id is not None:
            self.fail_open(mlflow.log_dict, data, artifact_file)

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

        return self.fail_open(register)


# ------------------------------------------------------------------ the default tracker
_default = Tracker()


def get_tracker() -> Tracker:
    """The process's default tracker (a new one after each :func:`configure`)."""
    return _default


def configure(
    tracking_uri: str | None = None, experiment: str = "slm-agents", store_raw: bool = False
) -> Tracker:
    """Point the default tracker somewhere else (a fresh Tracker; any old failure is forgotten).
    ``store_raw``: keep raw text in the store instead of redacted text."""
    global _default
    _default = Tracker(tracking_uri, experiment, store_raw)
    return _default


@contextlib.contextmanager
def raw_text(store_raw: bool) -> Iterator[None]:
    """Inside the block the default tracker stores raw text if ``store_raw`` (or if it already
    did): a team spec's ``privacy: {store_raw: true}`` for the length of its job."""
    tracker = get_tracker()
    before = tracker.store_raw
    tracker.store_raw = before or store_raw
    try:
        yield
    finally:
        tracker.store_raw = before


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

"""MLflow tracking that fails open: runs, params, buffered metrics, artifacts, spans, traces.

A broken or unreachable store never breaks an agent: its first failure warns once, naming the
cause (``TrackingWarning``), and tracking goes quiet; bugs in our own code still raise.
Importing this package loads no MLflow; each function imports it when it first needs it.

- :mod:`.store`: the facade (``Tracker``): runs, params, metrics, artifacts, model registry, and
  the process's default tracker behind the module-level functions
- :mod:`.spans`: ``span``, ``model_call`` (a span per batched model call), ``without_model_spans``
- :mod:`.traces`: ``trace_results``, one trace per request built from its Result's steps
- :mod:`.payload`: JSON-ready span values and MLflow's token-usage attribute
- :mod:`.failures`: which exceptions are store failures; describing them with secrets masked
"""

from slm_agents.tracking.spans import model_call, span, without_model_spans
from slm_agents.tracking.store import (
    FLUSH_EVERY,
    PARAM_VALUE_LIMIT,
    Tracker,
    TrackingWarning,
    configure,
    default_tracking_uri,
    disable,
    enable,
    flatten,
    flush,
    get_tracker,
    log_artifact,
    log_dict,
    log_metrics,
    log_params,
    raw_text,
    register_model,
    run,
)
from slm_agents.tracking.traces import SPAN_TYPES, trace_results

__all__ = [
    "FLUSH_EVERY",
    "PARAM_VALUE_LIMIT",
    "SPAN_TYPES",
    "Tracker",
    "TrackingWarning",
    "configure",
    "default_tracking_uri",
    "disable",
    "enable",
    "flatten",
    "flush",
    "get_tracker",
    "log_artifact",
    "log_dict",
    "log_metrics",
    "log_params",
    "raw_text",
    "model_call",
    "register_model",
    "run",
    "span",
    "trace_results",
    "without_model_spans",
]

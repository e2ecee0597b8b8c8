"""What counts as a tracking-store failure, and how to describe one without leaking secrets.

Fail-open is for the store (a corrupt database, an unreachable server, an unwritable artifact
folder), not for our own bugs: a TypeError in tracking code must raise like any other bug.
:func:`store_errors` lists the exception types a store raises; :func:`describe` names a
failure for the warning with passwords and tokens masked.
"""

from __future__ import annotations

import os
import re
import sys

# Exception types a store raises, by the module that defines them. A module that was never
# imported cannot have raised, so each is looked up only if already loaded (no import cost).
_STORE_ERRORS = {
    "mlflow.exceptions": ("MlflowException",),  # REST errors, bad URIs, store-level refusals
    "requests.exceptions": ("RequestException",),  # HTTP transport (also an OSError)
    "sqlalchemy.exc": ("SQLAlchemyError",),  # sqlite/postgres/mysql stores (corrupt, locked)
    "sqlite3": ("Error",),
    "botocore.exceptions": ("BotoCoreError", "ClientError"),  # S3 artifact stores
    "google.api_core.exceptions": ("GoogleAPIError",),  # GCS artifact stores
    "azure.core.exceptions": ("AzureError",),  # Azure Blob artifact stores
}

# Environment variables whose values are credentials MLflow may echo in an error.
_SECRET_VARIABLES = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s'\"]+@", re.IGNORECASE)
_SECRET_PARAMETER = re.compile(
    r"(?P<key>[?&;][^=&\s'\"]*(?:token|key|secret|password|passwd|pwd|sig|credential)"
    r"[^=&\s'\"]*=)[^&\s#'\"]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
MESSAGE_LIMIT = 1000


def store_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the store failed", among the modules loaded so far."""
    found: list[type[BaseException]] = [OSError]  # connections, timeouts, file permissions
    for module_name, names in _STORE_ERRORS.items():
        module = sys.modules.get(module_name)
        found.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(found)


def mask_secrets(text: str) -> str:
    """``text`` with URI credentials, secret query parameters, bearer tokens and the values of
    credential environment variables replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _SECRET_PARAMETER.sub(r"\g<key>***", text)
    text = _BEARER.sub(r"\g<scheme>***", text)
    for variable in _SECRET_VARIABLES:
        value = os.environ.get(variable)
        if value and len(value) >= 4:  # a one-letter "secret" would mask half the message
            text = text.replace(value, "***")
    return text


def describe(exc: BaseException) -> str:
    """``"Type: message"`` of a store failure, secrets masked, cut to a readable length."""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    # Mask before cutting, so no secret survives half-cut; SQL errors span lines, join them.
    message = mask_secrets(" ".join(str(exc).split()))
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + " ..."
    return f"{kind}: {message}"

"""The team spec's ``privacy:`` block, and which agents count as external.

Every agent is local (runs on this machine or cluster) or external. An endpoint agent is
external unless its host is loopback or listed in ``local_hosts``; ``endpoint.external``
overrides that either way. Text sent to an external agent is redacted (the kinds of ``redact``,
default all); ``on_prem: true`` refuses a team with any external agent; ``store_raw: true``
keeps raw text in MLflow and logs (default: redacted there too).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slm_agents.privacy.kinds import KINDS, check_kinds

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class PrivacyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_prem: bool = False  # refuse to start if any agent is external
    local_hosts: list[str] = Field(default_factory=list)  # hosts that count as on the premises
    redact: list[str] = Field(default_factory=lambda: list(KINDS))  # kinds, for external agents
    store_raw: bool = False  # keep raw text in MLflow traces, params and logs

    @field_validator("redact")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        return list(check_kinds(value, "privacy.redact"))

    @field_validator("local_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not h or "/" in h or " " in h]
        if bad:
            raise ValueError(f"local_hosts are host names or IP addresses, got {bad}")
        return [h.lower().strip("[]") for h in value]


def host_of(base_url: str) -> str:
    return (urlsplit(base_url).hostname or "").lower()


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_external(endpoint: Any, policy: PrivacyPolicy) -> bool:
    """Whether an agent on ``endpoint`` (an ``EndpointEntry`` or None) sends text off the
    premises. ``endpoint.external`` decides when set; otherwise the host does."""
    if endpoint is None:
        return False
    if getattr(endpoint, "external", None) is not None:
        return bool(endpoint.external)
    host = host_of(endpoint.base_url)
    return not (is_loopback(host) or host in policy.local_hosts)

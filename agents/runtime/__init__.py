"""Hosting agents: in this process, or as Ray actors with the same API.

``RayAgent(spec, hosting=HostingConfig(replicas=..., num_cpus=..., max_batch_size=...))`` hosts
an ``AgentSpec`` on Ray; ``spec.build()`` builds the same agent locally. Importing this package
does not import Ray.
"""

from slm_agents.runtime.config import HostingConfig
from slm_agents.runtime.spec import AgentSpec

__all__ = ["AgentSpec", "HostingConfig", "RayAgent", "ensure_ray"]


def __getattr__(name: str):
    if name in ("RayAgent", "ensure_ray"):
        from slm_agents.runtime import hosting

        return getattr(hosting, name)
    raise AttributeError(f"module 'slm_agents.runtime' has no attribute {name!r}")

"""``slm-agents serve``: our agents behind an OpenAI-compatible API, on Ray Serve.

Models, LoRA adapters (``base:adapter``) and whole teams (``team:name``) answer
``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``; see ``docs/serve.md``.
Nothing here imports Ray until a server is built.
"""

from slm_agents.serve.config import ServeConfig, ServeConfigError, load_serve_config

__all__ = ["ServeConfig", "ServeConfigError", "load_serve_config"]

"""slm-agents: small language models doing the real work of agent systems.

Importing ``agents`` is cheap: torch, transformers, ray and mlflow load only when a model,
runtime or tracker that needs them is created.
"""

__version__ = "0.1.0"

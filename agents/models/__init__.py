"""Model backends behind one small interface; heavy imports happen in the backend classes.

``CausalLM`` (transformers causal LM), ``OpenAIEndpoint`` (any OpenAI-compatible HTTP endpoint)
and ``EncoderClassifier`` (encoder + label head or zero-shot label descriptions) all take lists
and return one result per input.
"""

from slm_agents.models.base import Generation, InputError, Prediction, Usage
from slm_agents.models.sources import BUNDLED, ModelNotFoundError, resolve

__all__ = [
    "BUNDLED",
    "CausalLM",
    "EncoderClassifier",
    "Generation",
    "GenerationOptions",
    "InputError",
    "ModelNotFoundError",
    "OpenAIEndpoint",
    "Prediction",
    "Request",
    "Usage",
    "resolve",
]


def __getattr__(name: str):
    # Lazy: `from slm_agents.models import CausalLM` imports transformers only then.
    if name in ("CausalLM", "GenerationOptions", "Request"):
        from slm_agents.models import hf

        return getattr(hf, name)
    if name == "OpenAIEndpoint":
        from slm_agents.models.openai_endpoint import OpenAIEndpoint

        return OpenAIEndpoint
    if name == "EncoderClassifier":
        from slm_agents.models.classifier import EncoderClassifier

        return EncoderClassifier
    raise AttributeError(f"module 'slm_agents.models' has no attribute {name!r}")

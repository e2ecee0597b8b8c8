"""Model backends behind one small interface; heavy imports happen in the backend classes.

``CausalLM`` (transformers causal LM) and ``EncoderClassifier`` (encoder + label head or
zero-shot label descriptions) both take lists and return one result per input.
"""

from agents.models.base import Generation, InputError, Prediction, Usage
from agents.models.sources import BUNDLED, ModelNotFoundError, resolve

__all__ = [
    "BUNDLED",
    "CausalLM",
    "EncoderClassifier",
    "Generation",
    "GenerationOptions",
    "InputError",
    "ModelNotFoundError",
    "Prediction",
    "Request",
    "Usage",
    "resolve",
]


def __getattr__(name: str):
    # Lazy: `from agents.models import CausalLM` imports transformers only then.
    if name in ("CausalLM", "GenerationOptions", "Request"):
        from agents.models import hf

        return getattr(hf, name)
    if name == "EncoderClassifier":
        from agents.models.classifier import EncoderClassifier

        return EncoderClassifier
    raise AttributeError(f"module 'agents.models' has no attribute {name!r}")

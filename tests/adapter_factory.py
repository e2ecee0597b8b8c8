"""Real PEFT LoRA adapters for tests, built in seconds on the bundled SLM."""

from __future__ import annotations

from slm_agents.models import CausalLM


def make_adapter(lm: CausalLM, path, seed: int) -> None:
    """A real PEFT LoRA adapter with random (non-zero) weights, so it visibly changes output."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(lm.model, config)
    peft_model.save_pretrained(str(path))
    lm.model = peft_model.unload()  # give the base model back untouched

"""Adapting SLMs to a company's data: LoRA, distillation, quantization, pruning.

Installed as ``slm_agents.finetune`` (the folder is ``finetune/``).
"""

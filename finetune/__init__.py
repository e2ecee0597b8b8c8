"""Adapting SLMs to a company's data: LoRA, distillation, quantization, pruning (issue 4).

Installed as ``slm_agents.finetune`` (the folder is ``finetune/``).
"""

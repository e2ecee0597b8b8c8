"""Adapting SLMs to a company's data: LoRA, distillation, quantization, pruning (issue 4).

So far: ``finetune.data``, validated loading of labelled CSV/JSONL and a deterministic split.
"""

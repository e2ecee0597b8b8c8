"""``slm-agents finetune|compress|evaluate``: the scriptable face of :mod:`slm_agents.finetune`.

The three Typer apps, and which command goes where. The commands themselves are plain functions
in :mod:`~slm_agents.finetune.cli_classifier` and :mod:`~slm_agents.finetune.cli_sft`,
registered here explicitly, so neither module imports this one.
"""

from __future__ import annotations

import typer

from slm_agents.finetune import cli_classifier, cli_sft

finetune_app = typer.Typer(help="Fine-tune SLMs on your data (LoRA, distillation).")
compress_app = typer.Typer(help="Make a trained model smaller and faster (int8, pruning).")
evaluate_app = typer.Typer(help="Score a model on held-out data.")

finetune_app.command("classifier")(cli_classifier.finetune_classifier)
finetune_app.command("distill")(cli_classifier.finetune_distill)
finetune_app.command("sft")(cli_sft.finetune_sft)
finetune_app.command("extractor")(cli_sft.finetune_extractor)
finetune_app.command("code")(cli_sft.finetune_code)
evaluate_app.command("classifier")(cli_classifier.evaluate_classifier_command)
evaluate_app.command("extractor")(cli_sft.evaluate_extractor_command)
compress_app.command("quantize")(cli_classifier.compress_quantize)
compress_app.command("prune")(cli_classifier.compress_prune)

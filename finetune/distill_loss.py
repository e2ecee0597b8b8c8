"""The distillation loss and its settings: what a student classifier minimises.

Loss (Hinton et al., 2015): ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``,
where ``_T`` means softened at temperature ``T``. Its own module because the classifier recipe
computes it (:mod:`slm_agents.finetune.classifier`) while :mod:`slm_agents.finetune.distill`
drives the recipe: both import this, neither imports the other's caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DistillSettings:
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the teacher's soft targets; 1 - alpha on the true labels

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(
                f"need temperature > 0 and 0 <= alpha <= 1, got {self.temperature}, {self.alpha}"
            )


def distillation_loss(
    student_logits: Any, teacher_probs: Any, labels: Any, settings: DistillSettings
) -> Any:
    import torch.nn.functional as F

    t = settings.temperature
    teacher = F.softmax(teacher_probs.clamp_min(1e-9).log() / t, dim=-1)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=-1), teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)
    return settings.alpha * t * t * soft + (1.0 - settings.alpha) * hard

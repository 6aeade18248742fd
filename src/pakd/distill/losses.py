"""Distillation losses.

- rating: MSE between student and teacher rating predictions;
- ranking (listwise): KL(teacher || student) between softmax distributions over a
  per-user candidate list holding the teacher's top-ranked unseen items plus random items,
  scaled by T^2 as in Hinton et al. (2015) so gradients keep their size across temperatures;
- feature: MSE between a learned linear projection of the student's hidden representation
  and the teacher's (PCA-reduced) hidden representation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rating_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def listwise_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
                ) -> torch.Tensor:
    """student, teacher: [users, list] scores."""
    t = F.log_softmax(teacher / temperature, dim=1)
    s = F.log_softmax(student / temperature, dim=1)
    return (t.exp() * (t - s)).sum(1).mean() * temperature ** 2


def feature_distill(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(projected, teacher)

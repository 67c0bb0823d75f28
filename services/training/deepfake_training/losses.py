"""Focal loss (Lin et al., 2017) over two-class logits, as in the paper's recipe (gamma 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, reduction: str = "mean") -> Tensor:
    """-(1 - p_t)^gamma log p_t, with p_t the softmax probability of the true class; gamma 0 is cross-entropy.

    `logits` [N, 2], `targets` [N] int64. Computed from log-softmax, so it stays finite for confident logits.
    """
    log_probabilities = F.log_softmax(logits.float(), dim=-1)
    log_true = log_probabilities.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    losses = -((1.0 - log_true.exp()).clamp(min=0.0) ** gamma) * log_true
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")

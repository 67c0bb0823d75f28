"""Focal loss (Lin et al., 2017) over two-class logits, as in the paper's recipe (gamma 2), and the region loss
that pulls the heatmap of a synthetic fake onto the pixels it manipulated."""

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


def region_loss(cams: Tensor, regions: Tensor) -> Tensor:
    """Cross-entropy from the manipulated region, as a distribution over the CAM grid, to the softmax of the
    fake CAM: the evidence for 'fake' is drawn onto the manipulated cells.

    Why: with few identities and no pretrained weights, the network otherwise puts its evidence wherever a
    shortcut lies (a border cell of the coarse grid), and the heatmaps point away from the manipulation. The
    softmax ignores the CAM's mean, which is the fake logit, so this shapes where the evidence is, not how much.
    `cams` [N, h, w]; `regions` [N, h, w] in [0, 1], all zero for samples without a known region (reals, a
    dataset's own fakes), which are skipped; 0 when no sample has one.
    """
    flat = regions.flatten(1).float()
    mass = flat.sum(dim=1)
    chosen = mass > 0
    if not bool(chosen.any()):
        return cams.sum() * 0.0
    target = flat[chosen] / mass[chosen, None]
    log_probabilities = F.log_softmax(cams.flatten(1)[chosen].float(), dim=1)
    return -(target * log_probabilities).sum(dim=1).mean()

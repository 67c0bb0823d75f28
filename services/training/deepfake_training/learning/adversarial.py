"""Projected gradient descent (Madry et al., 2018) under an L-infinity budget, for adversarial training.

The attack runs with the model in eval mode (batch-norm statistics stay untouched by adversarial
inputs) and returns a detached tensor in [0, 1] within `epsilon` of the input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def pgd_attack(
    model: nn.Module,
    forward: Callable[[Tensor], Tensor],
    images: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    epsilon: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    random_start: bool = True,
    start: Tensor | None = None,
) -> Tensor:
    """Images (any shape, pixels in [0, 1]) perturbed to raise `loss_fn(forward(x), targets)`.

    `forward` maps images to logits (e.g. `model.frame_only`). Each step moves by `step_size` along the
    gradient's sign, then projects back into the epsilon ball and the valid pixel range. `start` (inside the
    ball) replaces the random start: data-parallel ranks draw it for the global batch and each takes its rows.
    """
    was_training = model.training
    model.eval()
    originals = images.detach()
    if start is not None:
        adversarial = start.detach().clone()
    elif random_start:
        noise = torch.rand(originals.shape, generator=generator, device="cpu").to(originals.device)
        adversarial = (originals + (noise * 2 - 1) * epsilon).clamp(0.0, 1.0)
    else:
        adversarial = originals.clone()
    try:
        for _ in range(steps):
            adversarial.requires_grad_(True)
            loss = loss_fn(forward(adversarial), targets)
            (gradient,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + step_size * gradient.sign()
                adversarial = torch.min(torch.max(adversarial, originals - epsilon), originals + epsilon).clamp(
                    0.0, 1.0
                )
    finally:
        model.train(was_training)
    return adversarial.detach()

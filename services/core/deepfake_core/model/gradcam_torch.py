"""Reference Grad-CAM with autograd, for tests and training tools (serving uses `explain.gradcam`).

Slow on CPU (a backward pass through the whole CNN), but it makes no assumption about the head, so it
is the yardstick the torch-free heatmaps are checked against.
"""

from __future__ import annotations

import numpy as np
import torch

from deepfake_core.model.network import FAKE_INDEX, HybridDeepfakeDetector


def gradcam_autograd(model: HybridDeepfakeDetector, faces: torch.Tensor | np.ndarray) -> np.ndarray:
    """Grad-CAM of the fake frame logit on the attended last-stage features: [B, T, h, w], float32, >= 0.

    `faces`: [B, T, 3, S, S], RGB in [0, 1]. The model runs in eval mode (no dropout, frozen batch
    statistics); its mode is restored afterwards.
    """
    # A leaf that needs gradients: the graph is recorded even if the model's parameters are frozen.
    faces_tensor = torch.as_tensor(faces).detach().to(torch.float32).clone().requires_grad_(True)
    batch, steps = faces_tensor.shape[:2]
    captured: list[torch.Tensor] = []

    def keep_attended(_module: torch.nn.Module, _inputs: object, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        captured.append(output[0])

    was_training = model.training
    model.eval()
    handle = model.spatial_attention.register_forward_hook(keep_attended)
    try:
        with torch.enable_grad():
            frame_logits = model.frame_only(faces_tensor.flatten(0, 1))
            # Frames are independent in the CNN branch, so one backward pass of the sum gives every
            # frame's gradient with respect to its own features.
            (gradients,) = torch.autograd.grad(frame_logits[:, FAKE_INDEX].sum(), captured[0])
    finally:
        handle.remove()
        model.train(was_training)
    attended = captured[0].detach()
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # alpha_c: spatial mean of the gradients
    cams = torch.relu((weights * attended).sum(dim=1))
    return cams.unflatten(0, (batch, steps)).numpy().astype(np.float32, copy=False)

"""A detector with non-degenerate weights and real face clips, for export, parity and Grad-CAM tests.

A freshly initialised network has identity batch norms and near-zero logits, which makes parity and
heatmap comparisons weak.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector

# The astronaut photo's face, as a square box (x, y, side) in its 512x512 pixels.
ASTRONAUT_FACE_BOX = (150, 20, 160)


def perturbed_model(input_size: int = 112, seed: int = 0) -> HybridDeepfakeDetector:
    """A deterministic detector with calibrated batch norms and randomised attention and heads; eval mode.

    At initialisation batch norms are identities and activations grow layer by layer; estimating their
    statistics on a few batches (as training would) keeps features of order one, and heads drawn at a
    trained model's scale give logits and CAMs of order one, with both signs.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = HybridDeepfakeDetector(DetectorConfig(input_size=input_size))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    calibration = torch.rand(6, 3, input_size, input_size, generator=generator)
    with torch.no_grad():
        for _ in range(2):
            model.frame_only(calibration)
        model.eval()
        model.spatial_attention.conv.weight.normal_(0.0, 0.003, generator=generator)
        # A random fake direction with no component along the mean feature: CAMs then take both signs.
        mean_feature = model.encode_frames(calibration).attended.mean(dim=(0, 2, 3))
        weight = torch.randn(2, mean_feature.numel(), generator=generator) * 0.03
        weight -= torch.outer(weight @ mean_feature, mean_feature) / mean_feature.dot(mean_feature)
        model.frame_head.weight.copy_(weight)
        model.sequence_head.weight.normal_(0.0, 0.5, generator=generator)
    return model.eval()


def face_clip(media_dir: Path, size: int, frames: int, batch: int = 1) -> np.ndarray:
    """[batch, frames, 3, size, size] float32 RGB crops of a real face, shifted a few pixels frame to frame."""
    image = cv2.cvtColor(cv2.imread(str(media_dir / "astronaut.png")), cv2.COLOR_BGR2RGB)
    x, y, side = ASTRONAUT_FACE_BOX
    clips = []
    for sequence in range(batch):
        crops = []
        for index in range(frames):
            dx, dy = 3 * index - sequence * 5, 2 * index + sequence * 4
            crop = image[max(y + dy, 0) : y + dy + side, max(x + dx, 0) : x + dx + side]
            crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
        clips.append(np.stack(crops))
    return (np.stack(clips).transpose(0, 1, 4, 2, 3) / 255.0).astype(np.float32)

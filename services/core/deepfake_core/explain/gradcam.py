"""Grad-CAM heatmaps from the model's `frame_cams` output: numpy and OpenCV only, no torch, no gradients.

Why the CAM output is Grad-CAM. The frame head is linear on the spatial mean of the attended
last-stage features A (C channels on an h x w grid):

    y_fake = b + sum_c W[fake, c] * (1 / (h w)) * sum_ij A[c, i, j]

so the gradient of the fake logit with respect to every A[c, i, j] is W[fake, c] / (h w), the same at
every location. Grad-CAM's channel weights are the spatial means of those gradients,
alpha_c = W[fake, c] / (h w), and its map is

    ReLU(sum_c alpha_c A[c]) = ReLU(sum_c W[fake, c] A[c]) / (h w) = ReLU(frame_cams) / (h w).

After normalising by the maximum, the constant 1 / (h w) cancels: the heatmap below is exactly
Grad-CAM on A, computed from one forward pass of the exported model (tests check it against
autograd Grad-CAM, `deepfake_core.model.gradcam_torch`).
"""

from __future__ import annotations

import cv2
import numpy as np


def heatmap_from_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """A [size, size] float32 heatmap in [0, 1] from one frame's CAM [h, w].

    ReLU keeps the evidence for 'fake' only; dividing by the maximum puts every frame on the same
    0..1 scale (a map with no positive evidence stays all zero); bilinear upsampling maps the coarse
    grid back onto the aligned face crop.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be [h, w], got shape {cam.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    positive = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = float(positive.max(initial=0.0))
    normalised = positive / peak if peak > 0.0 else positive
    heatmap = cv2.resize(normalised, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(heatmap, 0.0, 1.0).astype(np.float32, copy=False)


def heatmaps_from_cams(cams: np.ndarray, size: int) -> np.ndarray:
    """`heatmap_from_cam` for every frame of [T, h, w] CAMs: [T, size, size]."""
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3:
        raise ValueError(f"cams must be [T, h, w], got shape {cams.shape}")
    if len(cams) == 0:
        return np.zeros((0, size, size), dtype=np.float32)
    return np.stack([heatmap_from_cam(cam, size) for cam in cams])

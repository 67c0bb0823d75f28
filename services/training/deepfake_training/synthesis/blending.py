"""Putting a source face into a target: alpha blending, or Poisson (seamless) cloning, with the weight map.

Both return the weight of the source in every output pixel, so the region loss always knows which
pixels a fake changed, whatever the blend.
"""

from __future__ import annotations

import cv2
import numpy as np

BLEND_MODES = ("alpha", "normal_clone", "mixed_clone")
CLONE_FLAGS = {"normal_clone": cv2.NORMAL_CLONE, "mixed_clone": cv2.MIXED_CLONE}
# Below this many mask pixels a Poisson solve has nothing to work with: alpha blend instead.
MIN_CLONE_PIXELS = 32


def sample_blend_mode(rng: np.random.Generator, seamless_probability: float) -> str:
    """The blend of one fake: alpha, or `seamless_probability` of the time a clone (normal or mixed alike)."""
    if rng.random() >= seamless_probability:
        return "alpha"
    return "normal_clone" if rng.random() < 0.5 else "mixed_clone"


def composite(
    source: np.ndarray, target: np.ndarray, mask: np.ndarray, mode: str, alpha: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 RGB blend, float32 [H, W] weight of the blended-in face in each pixel, in [0, 1]).

    `mask` is the feathered blend mask before the blend ratio `alpha`. Alpha mode: source x weight +
    target x (1 - weight) with weight = mask x alpha. Clone modes: the Poisson clone of the source into the
    target inside mask > 0.5, mixed with the target by that mask (feathered inwards) x alpha.
    """
    if mode != "alpha":
        hard = _clone_mask(mask)
        if hard is not None:
            return _seamless_clone(source, target, hard, CLONE_FLAGS[mode], alpha)
    weight = (mask * np.float32(alpha)).astype(np.float32)
    blended = source * weight[..., None] + target.astype(np.float32) * (1.0 - weight[..., None])
    return blended, weight


def _clone_mask(mask: np.ndarray) -> np.ndarray | None:
    """uint8 0/255 mask for cv2.seamlessClone, with the one-pixel rim cleared (OpenCV clears it itself, and
    the clone's placement is computed from the mask's bounding box); None when too small to clone."""
    hard = (mask > 0.5).astype(np.uint8) * 255
    hard[[0, -1], :] = 0
    hard[:, [0, -1]] = 0
    return hard if int(np.count_nonzero(hard)) >= MIN_CLONE_PIXELS else None


def _seamless_clone(
    source: np.ndarray, target: np.ndarray, hard: np.ndarray, flag: int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The Poisson clone, kept to the mask: OpenCV solves over the mask's bounding box, so pixels just
    outside the mask move by a few grey levels too; mixing by the mask puts them back to the target."""
    x, y, width, height = cv2.boundingRect(hard)
    centre = (x + width // 2, y + height // 2)  # OpenCV places the box at centre - size // 2: in place
    source_u8 = np.clip(np.rint(source), 0, 255).astype(np.uint8)
    target_u8 = np.clip(np.rint(target), 0, 255).astype(np.uint8)
    # seamlessClone writes into the mask it is given: pass a copy.
    cloned = cv2.seamlessClone(source_u8, target_u8, hard.copy(), centre, flag).astype(np.float32)
    inside = (hard > 0).astype(np.float32)
    weight = (cv2.GaussianBlur(inside, (0, 0), sigmaX=1.0) * inside * np.float32(alpha)).astype(np.float32)
    blended = cloned * weight[..., None] + target.astype(np.float32) * (1.0 - weight[..., None])
    return blended, weight

"""Landmark masks for blending: the face hull (with a forehead estimate), deformed and feathered.

Everything is bounded by `face_region`: the hull grown by a fixed fraction of the face width. Blends
never touch pixels outside it, so the background a detector sees is always the real one.
"""

from __future__ import annotations

import cv2
import numpy as np

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE_TIP = 30
# How far past the hull any blend may reach, as a fraction of the face width.
REGION_GROWTH = 0.08


def face_width(landmarks: np.ndarray) -> float:
    """Jaw-to-jaw width in pixels, the unit all mask sizes are expressed in."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0])) or 1.0


def hull_points(landmarks: np.ndarray, forehead: float = 0.35) -> np.ndarray:
    """The 68 points plus the brows lifted by `forehead` x (brow-to-nose-tip height): 68 points stop at the brows."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if forehead <= 0:
        return landmarks
    brows = landmarks[BROWS]
    up = brows.mean(axis=0) - landmarks[NOSE_TIP]
    return np.concatenate([landmarks, brows + forehead * up])


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int], forehead: float = 0.35) -> np.ndarray:
    """float32 [H, W] mask: 1 inside the convex hull of the (forehead-extended) landmarks, else 0."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    hull = cv2.convexHull(np.round(hull_points(landmarks, forehead)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


def face_region(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The hull grown by REGION_GROWTH face widths: the support every blend mask is clipped to."""
    hull = hull_mask(landmarks, shape)
    radius = max(1, int(round(REGION_GROWTH * face_width(landmarks))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(hull, kernel)


def blend_mask(
    landmarks: np.ndarray,
    shape: tuple[int, int],
    grow: float,
    blur: float,
    forehead: float = 0.35,
    landmark_jitter: np.ndarray | None = None,
) -> np.ndarray:
    """A feathered mask in [0, 1]: hull, grown (grow > 0) or shrunk (< 0) by `grow` face widths, blurred.

    `blur` is the Gaussian sigma in face widths; `landmark_jitter` (68x2 pixels) deforms the hull. The
    result is clipped to `face_region`, so it never leaves the face.
    """
    width = face_width(landmarks)
    points = np.asarray(landmarks, dtype=np.float64)
    if landmark_jitter is not None:
        points = points + landmark_jitter
    mask = hull_mask(points, shape, forehead)
    radius = int(round(abs(grow) * width))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)
    sigma = blur * width
    if sigma > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.clip(mask * face_region(landmarks, shape), 0.0, 1.0)

"""Landmark masks for blending: the face hull (with a forehead estimate) or a part of it, deformed and feathered.

Everything is bounded by `face_region`: the hull grown by a fixed fraction of the face width. Blends
never touch pixels outside it, so the background a detector sees is always the real one. Parts (eyes,
mouth, nose and mouth, one half of the face) exist so that "a seam along the hull" is not the only
blend a detector ever sees.
"""

from __future__ import annotations

import cv2
import numpy as np

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE_BRIDGE_TOP = 27
NOSE_TIP = 30
CHIN = 8
# How far past the hull any blend may reach, as a fraction of the face width.
REGION_GROWTH = 0.08

# The dlib 68-point groups each partial mask is the (grown) convex hull of: brows and eyes (17-26, 36-47),
# the outer lip line (48-59), the lower nose (29-35) with the lips.
PART_POINTS: dict[str, tuple[int, ...]] = {
    "eyes": (*range(17, 27), *range(36, 48)),
    "mouth": tuple(range(48, 60)),
    "nose_mouth": (*range(29, 36), *range(48, 60)),
}
# Skin around a part, in face widths: a blend seam on the lip line or eyelid itself would be no real edit.
PART_MARGIN = {"eyes": 0.04, "mouth": 0.06, "nose_mouth": 0.05}
# Halves are sides of the image (left_half: smaller x), split by the line from the nose bridge to the chin.
HALVES = ("left_half", "right_half")
MASK_KINDS = ("hull", *PART_POINTS, *HALVES)


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


def half_plane(landmarks: np.ndarray, shape: tuple[int, int], side: str) -> np.ndarray:
    """float32 [H, W]: 1 on the `side` ("left_half" or "right_half") of the nose-bridge-to-chin line, else 0."""
    top, bottom = landmarks[NOSE_BRIDGE_TOP], landmarks[CHIN]
    direction = bottom - top
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    # The cross product is positive for pixels left of the line, seen upright (smaller x when it is vertical).
    cross = direction[0] * (rows - top[1]) - direction[1] * (cols - top[0])
    return ((cross > 0) == (side == "left_half")).astype(np.float32)


def part_mask(landmarks: np.ndarray, shape: tuple[int, int], kind: str, forehead: float = 0.35) -> np.ndarray:
    """float32 [H, W] 0/1 mask of the region a mask kind covers, before any growing or feathering."""
    if kind == "hull":
        return hull_mask(landmarks, shape, forehead)
    if kind in HALVES:
        return hull_mask(landmarks, shape, forehead) * half_plane(np.asarray(landmarks, np.float64), shape, kind)
    if kind not in PART_POINTS:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
    mask = np.zeros(shape[:2], dtype=np.uint8)
    points = np.asarray(landmarks, dtype=np.float64)[list(PART_POINTS[kind])]
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask.astype(np.float32)


def sample_mask_kind(rng: np.random.Generator, weights: tuple[tuple[str, float], ...]) -> str:
    """One mask kind drawn by its weight (weights need not sum to 1); one uniform draw, no array work."""
    left = float(rng.random()) * sum(weight for _, weight in weights)
    for kind, weight in weights:
        left -= weight
        if left < 0:
            return kind
    return weights[-1][0]


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
    kind: str = "hull",
) -> np.ndarray:
    """A feathered mask in [0, 1]: the `kind` region (see MASK_KINDS), grown (grow > 0) or shrunk (< 0) by
    `grow` face widths (parts first get their PART_MARGIN of skin), blurred.

    `blur` is the Gaussian sigma in face widths; `landmark_jitter` (68x2 pixels) deforms the region. The
    result is clipped to `face_region`, so it never leaves the face.
    """
    width = face_width(landmarks)
    points = np.asarray(landmarks, dtype=np.float64)
    if landmark_jitter is not None:
        points = points + landmark_jitter
    mask = part_mask(points, shape, kind, forehead)
    grow = grow + PART_MARGIN.get(kind, 0.0)
    radius = int(round(abs(grow) * width))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)
    sigma = blur * width
    if sigma > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.clip(mask * face_region(landmarks, shape), 0.0, 1.0)

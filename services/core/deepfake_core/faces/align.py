"""Face alignment: a similarity transform that puts eyes, nose and mouth on a canonical template.

Pure functions. The template is ArcFace's 112 px five-point layout, shrunk by `margin` so the crop
keeps forehead, jaw and some background: blending boundaries of face swaps live there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# ArcFace / InsightFace reference points for a 112x112 crop: eye centres (image left, image right),
# nose tip, mouth corners (image left, image right), in pixel coordinates.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# Indices in the 68-point iBUG layout. The subject's right eye (36-41) is on the image's left.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT = 48
_MOUTH_RIGHT = 54

# warpAffine samples bilinearly: shrinking by more than this aliases fine texture (the very
# artefacts the detector looks for), so larger faces are first reduced with area averaging.
_MAX_WARP_SHRINK = 2.0


@dataclass(frozen=True)
class AlignedFace:
    crop_rgb: np.ndarray  # size x size x 3 uint8, RGB
    matrix: np.ndarray  # 2x3 float64, frame pixels -> crop pixels


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (5x2) in the template's order."""
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"Expected 68x2 landmarks, got shape {points.shape}.")
    return np.stack(
        [
            points[_LEFT_EYE].mean(axis=0),
            points[_RIGHT_EYE].mean(axis=0),
            points[_NOSE_TIP],
            points[_MOUTH_LEFT],
            points[_MOUTH_RIGHT],
        ]
    )


def template_points(size: int, margin: float) -> np.ndarray:
    """The five template points for a `size` px crop with `margin` (fraction of the face) on each side."""
    unit = (ARCFACE_TEMPLATE_112 + 0.5) / 112.0  # pixel centres -> continuous [0, 1] coordinates
    return (unit + margin) / (1.0 + 2.0 * margin) * size - 0.5


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation from `source` to `target` (Umeyama 1991).

    Returns a 2x3 matrix. Reflections are excluded, so a mirrored input is never "aligned" by flipping.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    source_variance = (source_centered**2).sum() / len(source)
    scale = float((singular_values * signs).sum() / source_variance)
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def alignment_matrix(landmarks68: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2x3 matrix mapping frame pixels to the aligned `size` x `size` crop."""
    return similarity_transform(five_points(landmarks68), template_points(size, margin))


def align_face(image_bgr: np.ndarray, landmarks68: np.ndarray, size: int, margin: float) -> AlignedFace:
    """Warp the face onto the template; pixels beyond the frame edge repeat the border."""
    matrix = alignment_matrix(landmarks68, size, margin)
    source, warp = _antialiased_source(image_bgr, matrix, size)
    crop_bgr = cv2.warpAffine(source, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop_rgb=cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB), matrix=matrix)


def _antialiased_source(image_bgr: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """When the warp shrinks a lot, halve just the face's region with Gaussian pyramids first.

    Returns the (possibly reduced) source and the warp from it to the crop. The region is clipped to
    the frame, so border replication still happens at the frame's own edges.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale * _MAX_WARP_SHRINK >= 1.0:
        return image_bgr, matrix
    height, width = image_bgr.shape[:2]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    mapped = corners @ cv2.invertAffineTransform(matrix).T
    x0 = max(0, int(np.floor(mapped[:, 0].min())) - 4)
    y0 = max(0, int(np.floor(mapped[:, 1].min())) - 4)
    x1 = min(width, int(np.ceil(mapped[:, 0].max())) + 4)
    y1 = min(height, int(np.ceil(mapped[:, 1].max())) + 4)
    if x1 - x0 < 8 or y1 - y0 < 8:  # the face lies off-frame: nothing worth shrinking
        return image_bgr, matrix
    region = image_bgr[y0:y1, x0:x1]
    halvings = 0
    while scale * _MAX_WARP_SHRINK * 2**halvings < 1.0 and min(region.shape[:2]) >= 8:
        region = cv2.pyrDown(region)  # output pixel i is centred on input pixel 2i
        halvings += 1
    factor = 0.5**halvings
    to_region = np.array([[factor, 0.0, -x0 * factor], [0.0, factor, -y0 * factor], [0.0, 0.0, 1.0]])
    warp = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ np.linalg.inv(to_region)
    return region, warp[:2]

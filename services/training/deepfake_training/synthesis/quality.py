"""Image-quality changes of a fake's source face: resolution jitter, sharpness matching, a JPEG pass before blending.

They vary how sharp and how compressed the pasted face is relative to the rest of the image, so that
neither difference is a constant cue for "fake"; the blend itself must be what the detector finds.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_training.data.augment import jpeg_recompress
from deepfake_training.synthesis.masks import hull_mask
from deepfake_training.synthesis.options import SynthesisOptions

# Resolution factors tried when matching a donor's sharpness to a target's (1 = the donor as it is).
MATCH_FACTORS = (1.0, 0.85, 0.7, 0.55, 0.4)


def downscale_upscale(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` resampled through `factor` x its size and back (area down, bilinear up): the detail a
    lower-resolution source would have. Same dtype and size; factor >= 1 returns the image unchanged."""
    if factor >= 0.999:
        return image
    height, width = image.shape[:2]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    reduced = cv2.resize(np.ascontiguousarray(image), small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian over the face's landmark hull: the high-frequency energy of the face.

    Comparable between faces at the same scale only (aligned crops of one size, as the training cache has).
    """
    grey = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    inside = hull_mask(landmarks, grey.shape, forehead=0.0) > 0
    if inside.sum() < 16:
        inside = np.ones_like(inside)
    return float(cv2.Laplacian(grey, cv2.CV_32F)[inside].var())


def matching_factor(donor: np.ndarray, donor_landmarks: np.ndarray, target: np.ndarray,
                    target_landmarks: np.ndarray) -> float:  # fmt: skip
    """The MATCH_FACTORS entry whose resampled donor face is closest in sharpness (log ratio) to the target's.

    A sharp photo donor on a soft video frame is the textbook shortcut; a donor softer than its target
    keeps factor 1 (resampling can only remove detail).
    """
    wanted = np.log(sharpness(target, target_landmarks) + 1e-3)
    x, y, w, h = cv2.boundingRect(np.round(donor_landmarks).astype(np.int32))
    margin = max(2, w // 8)
    x0, y0 = max(0, x - margin), max(0, y - margin)
    crop = donor[y0 : y + h + margin, x0 : x + w + margin]
    local = np.asarray(donor_landmarks, np.float64) - [x0, y0]
    gaps = [abs(np.log(sharpness(downscale_upscale(crop, f), local) + 1e-3) - wanted) for f in MATCH_FACTORS]
    return MATCH_FACTORS[int(np.argmin(gaps))]


def sample_resolution_factor(rng: np.random.Generator, options: SynthesisOptions) -> float:
    """1.0 (untouched) or, `resolution_probability` of the time, a factor uniform in `resolution_range`."""
    low, high = options.resolution_range
    return float(rng.uniform(low, high)) if rng.random() < options.resolution_probability else 1.0


def sample_source_jpeg(rng: np.random.Generator, options: SynthesisOptions) -> int:
    """JPEG quality of a pass on the source before blending, `source_jpeg_probability` of the time; 0 = none."""
    low, high = options.source_jpeg_quality
    return int(rng.integers(low, high + 1)) if rng.random() < options.source_jpeg_probability else 0


def compress_source(image: np.ndarray, quality: int) -> np.ndarray:
    """The source face (float or uint8 RGB) after one JPEG pass at `quality`, as float32; 0 = unchanged."""
    if quality <= 0:
        return image
    return jpeg_recompress(np.clip(np.rint(image), 0, 255).astype(np.uint8), quality).astype(np.float32)

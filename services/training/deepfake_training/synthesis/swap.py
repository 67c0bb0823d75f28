"""Landmark-warped face swaps between two identities: the classic pre-GAN face swap pipeline.

The donor's face is warped triangle by triangle (Delaunay over the 68 landmarks) onto the target's
landmarks, colour-matched to the target in Lab inside the mask, and blended with a feathered mask (the
hull or a part of the face), by alpha blending or sometimes Poisson cloning. Donors are often sharp photo
faces: some are resampled to the target's sharpness, some to a random lower resolution, so that "the
face is sharper than the frame" is not what a detector learns.
The donor must be another person: `SwapPairing` only pairs identities of the same split, so no held-out
person ever appears in a training fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy.spatial import Delaunay

from deepfake_training.synthesis.blending import composite, sample_blend_mode
from deepfake_training.synthesis.masks import blend_mask, face_width, sample_mask_kind
from deepfake_training.synthesis.options import DEFAULT_OPTIONS, SynthesisOptions
from deepfake_training.synthesis.quality import (
    compress_source,
    downscale_upscale,
    matching_factor,
    sample_resolution_factor,
    sample_source_jpeg,
)


def triangles(landmarks: np.ndarray) -> np.ndarray:
    """Delaunay triangles [K, 3] (landmark indices) of a face; reused for the donor's matching points."""
    return Delaunay(np.asarray(landmarks, dtype=np.float64)).simplices


def warp_triangles(
    source: np.ndarray,
    source_points: np.ndarray,
    target_points: np.ndarray,
    shape: tuple[int, int],
    simplices: np.ndarray,
) -> np.ndarray:
    """Piecewise-affine warp of `source` so that source_points land on target_points; float32 [H, W, 3]."""
    height, width = shape[:2]
    out = np.zeros((height, width, 3), dtype=np.float32)
    source_f = source.astype(np.float32)
    for simplex in simplices:
        src = source_points[simplex].astype(np.float32)
        dst = target_points[simplex].astype(np.float32)
        x, y, w, h = cv2.boundingRect(np.round(dst).astype(np.int32))
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + w + 1), min(height, y + h + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        matrix = cv2.getAffineTransform(src, dst - np.array([x0, y0], dtype=np.float32))
        patch = cv2.warpAffine(
            source_f, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        tri_mask = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        cv2.fillConvexPoly(tri_mask, np.round(dst - [x0, y0]).astype(np.int32), 1.0)
        region = out[y0:y1, x0:x1]
        region[:] = region * (1.0 - tri_mask[..., None]) + patch * tri_mask[..., None]
    return out


def match_colour(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift `source` (float RGB 0..255) so its Lab mean and spread inside `mask` match `target`'s."""
    weight = mask > 0.5
    if weight.sum() < 16:
        return source
    source_lab = cv2.cvtColor(np.clip(source, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    target_lab = cv2.cvtColor(target.astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = source_lab[weight].mean(0), source_lab[weight].std(0) + 1e-3
    t_mean, t_std = target_lab[weight].mean(0), target_lab[weight].std(0) + 1e-3
    matched = (source_lab - s_mean) / s_std * t_std + t_mean
    return cv2.cvtColor(np.clip(matched, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)


@dataclass(frozen=True)
class SwapParameters:
    """One swap. Mask sizes are fractions of the face width."""

    mask_grow: float = -0.03
    mask_blur: float = 0.04
    forehead: float = 0.0
    alpha: float = 1.0
    colour_match: bool = True
    donor_resolution: float = 1.0  # the donor resampled through this fraction of its size (1 = untouched)
    match_sharpness: bool = False  # choose donor_resolution so the donor is as sharp as the target
    mask_kind: str = "hull"  # masks.MASK_KINDS
    blend_mode: str = "alpha"  # blending.BLEND_MODES
    donor_jpeg: int = 0  # quality of a JPEG pass on the donor before warping; 0 = none


def sample_swap_parameters(rng: np.random.Generator, options: SynthesisOptions = DEFAULT_OPTIONS) -> SwapParameters:
    """Random swap parameters; the anti-shortcut ones (donor quality, mask kind, clone) from `options`."""
    params = SwapParameters(
        mask_grow=float(rng.uniform(-0.06, 0.0)),
        mask_blur=float(rng.uniform(0.015, 0.06)),
        forehead=float(rng.uniform(0.0, 0.3)),
        alpha=float(rng.choice((0.75, 1.0, 1.0))),
        colour_match=bool(rng.random() < 0.85),
    )
    match = bool(rng.random() < options.donor_match_probability)
    return replace(
        params,
        match_sharpness=match,
        donor_resolution=1.0 if match else sample_resolution_factor(rng, options),
        mask_kind=sample_mask_kind(rng, options.mask_kinds),
        blend_mode=sample_blend_mode(rng, options.seamless_probability),
        donor_jpeg=sample_source_jpeg(rng, options),
    )


def resolve_donor_resolution(
    params: SwapParameters,
    target: np.ndarray,
    target_landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
) -> SwapParameters:
    """`params` with a sharpness match turned into a fixed donor_resolution (measured on these faces), so
    that a clip keeps one donor resolution instead of flickering between matches frame by frame."""
    if not params.match_sharpness:
        return params
    factor = matching_factor(donor, np.asarray(donor_landmarks), target, np.asarray(target_landmarks))
    return replace(params, match_sharpness=False, donor_resolution=factor)


def face_swap(
    target: np.ndarray,
    target_landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
    params: SwapParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Put the donor's face on the target: (fake RGB uint8, blend mask float32 [H, W] in [0, 1])."""
    target_landmarks = np.asarray(target_landmarks, dtype=np.float64)
    donor_landmarks = np.asarray(donor_landmarks, dtype=np.float64)
    params = resolve_donor_resolution(params, target, target_landmarks, donor, donor_landmarks)
    donor = compress_source(downscale_upscale(donor, params.donor_resolution), params.donor_jpeg)
    simplices = triangles(target_landmarks)
    warped = warp_triangles(donor, donor_landmarks, target_landmarks, target.shape[:2], simplices)
    mask = blend_mask(
        target_landmarks, target.shape[:2], params.mask_grow, params.mask_blur, params.forehead, kind=params.mask_kind
    )
    # The warp only covers the landmark triangles; the forehead part of the mask has no donor pixels.
    covered = np.zeros(target.shape[:2], dtype=np.float32)
    cv2.fillConvexPoly(covered, cv2.convexHull(np.round(target_landmarks).astype(np.int32)), 1.0)
    covered = cv2.erode(
        covered, np.ones((3, 3), np.uint8), iterations=max(1, round(0.03 * face_width(target_landmarks)))
    )
    mask = np.minimum(mask, cv2.GaussianBlur(covered, (0, 0), sigmaX=max(0.5, 0.04 * face_width(target_landmarks))))
    if params.colour_match:
        warped = match_colour(warped, target, mask)
    blended, mask = composite(warped, target, mask, params.blend_mode, params.alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask.astype(np.float32)


def random_face_swap(
    target: np.ndarray,
    target_landmarks: np.ndarray,
    donor: np.ndarray,
    donor_landmarks: np.ndarray,
    rng: np.random.Generator,
    options: SynthesisOptions = DEFAULT_OPTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """One swap with parameters drawn from `rng`: (fake, manipulated region)."""
    return face_swap(target, target_landmarks, donor, donor_landmarks, sample_swap_parameters(rng, options))


def face_swap_video(
    targets: np.ndarray,
    target_landmarks: np.ndarray,
    donors: np.ndarray,
    donor_landmarks: np.ndarray,
    rng: np.random.Generator,
    options: SynthesisOptions = DEFAULT_OPTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Swap a donor clip (or one donor frame, repeated) onto a target clip, frame by frame.

    Per-frame warps and colour matching flicker slightly, as real frame-by-frame swappers do; the donor's
    resolution is chosen once, on the first frames.
    """
    params = sample_swap_parameters(rng, options)
    params = resolve_donor_resolution(params, targets[0], target_landmarks[0], donors[0], donor_landmarks[0])
    fakes, masks = [], []
    for t in range(len(targets)):
        d = t % len(donors)
        fake, mask = face_swap(targets[t], target_landmarks[t], donors[d], donor_landmarks[d], params)
        fakes.append(fake)
        masks.append(mask)
    return np.stack(fakes), np.stack(masks)


class IdentityLeakError(ValueError):
    """Some identity appears in more than one split; the message names them."""


@dataclass(frozen=True)
class SwapPairing:
    """Who may donate a face to whom: other identities of the same split only."""

    identities: tuple[str, ...]
    splits: tuple[str, ...]

    @classmethod
    def of(cls, identities: Sequence[str], splits: Sequence[str]) -> SwapPairing:
        assert_identity_disjoint(identities, splits)
        return cls(tuple(identities), tuple(splits))

    def donors_for(self, position: int) -> list[int]:
        """Positions of the items that may donate to item `position`."""
        identity, split = self.identities[position], self.splits[position]
        return [
            k for k, (other, other_split) in enumerate(zip(self.identities, self.splits, strict=True))
            if other != identity and other_split == split
        ]  # fmt: skip


def assert_identity_disjoint(identities: Sequence[str], splits: Sequence[str]) -> None:
    """Raise IdentityLeakError when a person is on both sides of a split."""
    seen: dict[str, set[str]] = {}
    for identity, split in zip(identities, splits, strict=True):
        seen.setdefault(identity, set()).add(split)
    leaks = {identity: sorted(s) for identity, s in seen.items() if len(s) > 1}
    if leaks:
        raise IdentityLeakError(f"identities in more than one split: {leaks}")

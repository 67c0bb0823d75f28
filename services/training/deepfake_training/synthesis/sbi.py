"""Self-blended images (SBI; Shiohara and Yamasaki, CVPR 2022): a face blended with a jittered copy of itself.

The copy gets colour jitter (RGB shift, hue/saturation/value, brightness/contrast), a blur or sharpen and
a small geometric jitter (scale, shift); it is pasted back inside a deformed, feathered landmark mask with
a random blend ratio. The result carries the traces every face swap leaves (blending boundary, colour and
geometry mismatch) without any identity change, so a detector trained on it cannot learn identities.

For videos the blend parameters drift from a start to an end setting over the clip and jitter a little
per frame, as the output of a frame-by-frame face swapper flickers: the temporal branch has something
to learn. Works on aligned crops and on full frames alike (landmarks in the image's pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from deepfake_training.synthesis.masks import blend_mask, face_region, face_width

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the SBI paper's choice: mostly full replacement


@dataclass(frozen=True)
class BlendParameters:
    """One self-blend. Geometry and mask sizes are fractions of the face width, colours of the 0..255 range."""

    rgb_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hue_shift: float = 0.0  # OpenCV hue units (0..180 is a full turn)
    saturation_scale: float = 1.0
    value_scale: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    sharpness: float = 0.0  # < 0 blurs the copy, > 0 sharpens it
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    mask_grow: float = 0.0
    mask_blur: float = 0.03
    forehead: float = 0.35
    alpha: float = 1.0
    swap_roles: bool = False  # jitter the target instead of the source (SBI does both)

    def lerp(self, other: BlendParameters, t: float) -> BlendParameters:
        """Linear interpolation towards `other` (booleans switch at t = 0.5)."""
        values = {}
        for item in fields(self):
            a, b = getattr(self, item.name), getattr(other, item.name)
            if isinstance(a, bool):
                values[item.name] = a if t < 0.5 else b
            elif isinstance(a, tuple):
                values[item.name] = tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))
            else:
                values[item.name] = float(a + (b - a) * t)
        return BlendParameters(**values)


def sample_blend_parameters(rng: np.random.Generator, strength: float = 1.0) -> BlendParameters:
    """Random parameters in the ranges of the SBI paper's source-target augmentations (`strength` 1).

    Each colour change applies with probability 0.3 (as there); the blur-or-sharpen and the geometric
    jitter always apply, so that every blend leaves some trace. `strength` > 1 widens the colour and
    geometry ranges and makes colour changes more frequent: easier fakes, for the start of a curriculum.
    """
    chance = min(1.0, 0.3 * strength)

    def sometimes(spread: float, identity: float) -> float:
        return identity + float(rng.uniform(-spread, spread)) * strength if rng.random() < chance else identity

    rgb = rng.uniform(-20, 20, size=3) * strength if rng.random() < chance else np.zeros(3)
    shift = 0.03 * min(strength, 2.0)
    return BlendParameters(
        rgb_shift=(float(rgb[0]), float(rgb[1]), float(rgb[2])),
        hue_shift=sometimes(2.0, 0.0),
        saturation_scale=max(0.2, sometimes(0.2, 1.0)),
        value_scale=max(0.2, sometimes(0.15, 1.0)),
        contrast=max(0.2, sometimes(0.2, 1.0)),
        brightness=sometimes(20.0, 0.0),
        sharpness=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)),
        scale=float(rng.uniform(1 - 0.05 * min(strength, 2.0), 1 + 0.05 * min(strength, 2.0))),
        shift=(float(rng.uniform(-shift, shift)), float(rng.uniform(-shift, shift))),
        mask_grow=float(rng.uniform(-0.05, 0.03)),
        mask_blur=float(rng.uniform(0.01, 0.06)),
        forehead=float(rng.uniform(0.0, 0.5)),
        alpha=float(rng.choice(BLEND_RATIOS)),
        swap_roles=bool(rng.random() < 0.5),
    )


def jitter_colour(image: np.ndarray, params: BlendParameters) -> np.ndarray:
    """Colour and sharpness jitter of an RGB uint8 image, as float32 0..255."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + params.hue_shift, 180.0)
    hsv[..., 1] *= params.saturation_scale
    hsv[..., 2] *= params.value_scale
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out += np.asarray(params.rgb_shift, dtype=np.float32)
    out = (out - 128.0) * params.contrast + 128.0 + params.brightness
    if params.sharpness:
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=1.0)
        out = out + params.sharpness * (out - blurred) if params.sharpness > 0 else blurred
    return np.clip(out, 0, 255)


def jitter_geometry(image: np.ndarray, landmarks: np.ndarray, params: BlendParameters) -> np.ndarray:
    """Scale about the face centre and shift, both relative to the face size; borders repeat."""
    width = face_width(landmarks)
    centre = landmarks.mean(axis=0)
    matrix = np.array(
        [
            [params.scale, 0.0, (1 - params.scale) * centre[0] + params.shift[0] * width],
            [0.0, params.scale, (1 - params.scale) * centre[1] + params.shift[1] * width],
        ]
    )
    height, width_px = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width_px, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(
    image: np.ndarray, landmarks: np.ndarray, params: BlendParameters, mask_jitter: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One SBI: (fake RGB uint8, float32 [H, W] weight of the jittered copy in each output pixel, in [0, 1])."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    original = image.astype(np.float32)
    jittered = jitter_geometry(jitter_colour(image, params), landmarks, params)
    source, target = (original, jittered) if params.swap_roles else (jittered, original)
    mask = blend_mask(
        landmarks, image.shape[:2], params.mask_grow, params.mask_blur, params.forehead, mask_jitter
    ) * np.float32(params.alpha)
    blended = source * mask[..., None] + target * (1.0 - mask[..., None])
    if params.swap_roles:
        # The jittered copy is the background here; beyond the face region the image stays the real one,
        # so no border pixel (reflected by the geometric jitter) can give the fake away.
        hard = face_region(landmarks, image.shape[:2])
        region = (cv2.GaussianBlur(hard, (0, 0), sigmaX=1.0) * hard)[..., None]  # feathered inwards only
        blended = blended * region + original * (1.0 - region)
        mask = (1.0 - mask) * region[..., 0]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask.astype(np.float32)


def random_self_blend(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    params = sample_blend_parameters(rng, strength)
    jitter = rng.normal(0.0, 0.01 * face_width(np.asarray(landmarks)), size=(68, 2))
    return self_blend(image, landmarks, params, jitter)


def self_blend_video(
    frames: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    drift: float = 1.0,
    flicker: float = 0.3,
    strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SBI over a clip: parameters move from a start to an end draw (`drift` of the way) plus per-frame flicker.

    `frames` [T, H, W, 3] uint8, `landmarks` [T, 68, 2]; returns fakes [T, H, W, 3] and masks [T, H, W].
    `flicker` scales the per-frame jitter of alpha, mask and geometry (0 = perfectly smooth).
    """
    start = sample_blend_parameters(rng, strength)
    # The end draw keeps the role choice: a swapper does not swap roles mid-clip.
    end = replace(sample_blend_parameters(rng, strength), swap_roles=start.swap_roles)
    steps = len(frames)
    fakes, masks = [], []
    for t in range(steps):
        params = start.lerp(end, drift * t / max(1, steps - 1))
        params = replace(
            params,
            alpha=float(np.clip(params.alpha + flicker * rng.normal(0, 0.1), 0.2, 1.0)),
            mask_blur=float(max(0.005, params.mask_blur + flicker * rng.normal(0, 0.01))),
            shift=tuple(float(s + flicker * rng.normal(0, 0.006)) for s in params.shift),  # type: ignore[arg-type]
        )
        jitter = rng.normal(0.0, 0.01 * (0.5 + flicker) * face_width(np.asarray(landmarks[t])), size=(68, 2))
        fake, mask = self_blend(frames[t], landmarks[t], params, jitter)
        fakes.append(fake)
        masks.append(mask)
    return np.stack(fakes), np.stack(masks)

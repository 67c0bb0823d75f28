"""Self-blended images (SBI; Shiohara and Yamasaki, CVPR 2022): a face blended with a jittered copy of itself.

The copy gets colour jitter (RGB shift, hue/saturation/value, brightness/contrast), sometimes a blur or
sharpen, sometimes a lower resolution or a JPEG pass, and a small geometric jitter (scale, shift); it is
pasted back inside a deformed, feathered landmark mask (the hull or a part of the face) with a random blend
ratio, by alpha blending or, sometimes, Poisson cloning. The result carries the traces every face swap
leaves (blending boundary, colour and geometry mismatch) without any identity change, so a detector
trained on it cannot learn identities; the variations (`SynthesisOptions`) keep any one of them, such as
"the face is blurrier than the rest", from being a constant cue.

For videos the blend parameters drift from a start to an end setting over the clip and jitter a little
per frame, as the output of a frame-by-frame face swapper flickers: the temporal branch has something
to learn. Works on aligned crops and on full frames alike (landmarks in the image's pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from deepfake_training.synthesis.blending import composite, sample_blend_mode
from deepfake_training.synthesis.masks import blend_mask, face_region, face_width, sample_mask_kind
from deepfake_training.synthesis.options import DEFAULT_OPTIONS, SynthesisOptions
from deepfake_training.synthesis.quality import (
    compress_source,
    downscale_upscale,
    sample_resolution_factor,
    sample_source_jpeg,
)

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
    resolution: float = 1.0  # the copy resampled through this fraction of its size (1 = untouched)
    mask_kind: str = "hull"  # masks.MASK_KINDS
    blend_mode: str = "alpha"  # blending.BLEND_MODES
    source_jpeg: int = 0  # quality of a JPEG pass on the copy before blending; 0 = none

    def lerp(self, other: BlendParameters, t: float) -> BlendParameters:
        """Linear interpolation towards `other` (booleans and names switch at t = 0.5, integers round)."""
        values: dict[str, object] = {}
        for item in fields(self):
            a, b = getattr(self, item.name), getattr(other, item.name)
            if isinstance(a, bool | str):
                values[item.name] = a if t < 0.5 else b
            elif isinstance(a, int):
                values[item.name] = int(round(a + (b - a) * t))
            elif isinstance(a, tuple):
                values[item.name] = tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))
            else:
                values[item.name] = float(a + (b - a) * t)
        return BlendParameters(**values)  # type: ignore[arg-type]


def sample_blend_parameters(
    rng: np.random.Generator, strength: float = 1.0, options: SynthesisOptions = DEFAULT_OPTIONS
) -> BlendParameters:
    """Random parameters in the ranges of the SBI paper's source-target augmentations (`strength` 1).

    Each colour change applies with probability 0.3 (as there); the geometric jitter always applies, so
    that every blend leaves some trace. The blur-or-sharpen applies `options.sharpen_probability` of the
    time (the paper: always), so "sharper or blurrier than the rest" is not a constant cue; the resolution
    jitter, mask kind, Poisson clone and JPEG pass are drawn from `options`, after the paper's draws.
    `strength` > 1 widens the colour and geometry ranges and makes colour changes more frequent: easier
    fakes, for the start of a curriculum.
    """
    chance = min(1.0, 0.3 * strength)

    def sometimes(spread: float, identity: float) -> float:
        return identity + float(rng.uniform(-spread, spread)) * strength if rng.random() < chance else identity

    rgb = rng.uniform(-20, 20, size=3) * strength if rng.random() < chance else np.zeros(3)
    shift = 0.03 * min(strength, 2.0)
    params = BlendParameters(
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
    return _with_variations(params, rng, options)


def _with_variations(params: BlendParameters, rng: np.random.Generator, options: SynthesisOptions) -> BlendParameters:
    """The anti-shortcut draws, made after the paper's so those keep their values for a given seed.

    A partial mask keeps the jitter on the pasted copy: with swapped roles the whole face but the part
    would change, a hull blend again rather than a local edit.
    """
    keep_sharpness = rng.random() < options.sharpen_probability
    resolution = sample_resolution_factor(rng, options)
    mask_kind = sample_mask_kind(rng, options.mask_kinds)
    return replace(
        params,
        sharpness=params.sharpness if keep_sharpness else 0.0,
        resolution=resolution,
        mask_kind=mask_kind,
        blend_mode=sample_blend_mode(rng, options.seamless_probability),
        source_jpeg=sample_source_jpeg(rng, options),
        swap_roles=params.swap_roles and mask_kind == "hull",
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
    """One SBI: (fake RGB uint8, float32 [H, W] manipulated region: the weight of the blended-in face in each
    output pixel, in [0, 1], covering every pixel the blend changed)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    original = image.astype(np.float32)
    jittered = downscale_upscale(jitter_colour(image, params), params.resolution)
    jittered = compress_source(jitter_geometry(jittered, landmarks, params), params.source_jpeg)
    source, target = (original, jittered) if params.swap_roles else (jittered, original)
    shape = blend_mask(
        landmarks, image.shape[:2], params.mask_grow, params.mask_blur, params.forehead, mask_jitter, params.mask_kind
    )
    blended, mask = composite(source, target, shape, params.blend_mode, params.alpha)
    if params.swap_roles:
        # The jittered copy is the background here; beyond the face region the image stays the real one,
        # so no border pixel (reflected by the geometric jitter) can give the fake away.
        hard = face_region(landmarks, image.shape[:2])
        region = (cv2.GaussianBlur(hard, (0, 0), sigmaX=1.0) * hard)[..., None]  # feathered inwards only
        blended = blended * region + original * (1.0 - region)
        # An alpha blend keeps the original inside the mask; a Poisson clone re-solves it from the jittered
        # border, so there the whole face region changed.
        mask = (1.0 - mask) * region[..., 0] if params.blend_mode == "alpha" else region[..., 0]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask.astype(np.float32)


def random_self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    options: SynthesisOptions = DEFAULT_OPTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """One SBI with parameters and a mask deformation drawn from `rng`: (fake, manipulated region)."""
    params = sample_blend_parameters(rng, strength, options)
    jitter = rng.normal(0.0, 0.01 * face_width(np.asarray(landmarks)), size=(68, 2))
    return self_blend(image, landmarks, params, jitter)


def self_blend_video(
    frames: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    drift: float = 1.0,
    flicker: float = 0.3,
    strength: float = 1.0,
    options: SynthesisOptions = DEFAULT_OPTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """SBI over a clip: parameters move from a start to an end draw (`drift` of the way) plus per-frame flicker.

    `frames` [T, H, W, 3] uint8, `landmarks` [T, 68, 2]; returns fakes [T, H, W, 3] and masks [T, H, W].
    `flicker` scales the per-frame jitter of alpha, mask and geometry (0 = perfectly smooth).
    """
    start = sample_blend_parameters(rng, strength, options)
    # The end draw keeps the choices a swapper makes once per clip: roles, mask, blend, compression.
    end = replace(
        sample_blend_parameters(rng, strength, options),
        swap_roles=start.swap_roles,
        mask_kind=start.mask_kind,
        blend_mode=start.blend_mode,
        source_jpeg=start.source_jpeg,
    )
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

"""How often each anti-shortcut variation of the synthetic fakes is drawn: one frozen record, one default.

The defaults are what training uses; a `TrainingConfig` field per probability can later pass its own record.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthesisOptions:
    """Probabilities and ranges of the variations that stop a detector from learning shortcuts.

    Without them every SBI copy is blurred or sharpened, every donor is a sharp photo face and every
    blend is an alpha blend over the whole hull: "sharper or blurrier than the rest" and "a seam at the
    hull border" would separate the classes without any manipulation trace being learned.
    """

    # SBI: share of copies blurred or sharpened; the rest keep the original's sharpness.
    sharpen_probability: float = 0.65
    # SBI copy, and swap donors not matched to the target: share resampled through a lower resolution.
    resolution_probability: float = 0.5
    resolution_range: tuple[float, float] = (0.4, 1.0)
    # Swaps: share of donors resampled to the sharpness of the target face (photo donors on video targets).
    donor_match_probability: float = 0.4
    # Mask shapes (see masks.MASK_KINDS) and their weights; the full hull stays the most common.
    mask_kinds: tuple[tuple[str, float], ...] = (
        ("hull", 0.5),
        ("eyes", 0.12),
        ("mouth", 0.12),
        ("nose_mouth", 0.1),
        ("left_half", 0.08),
        ("right_half", 0.08),
    )
    # Poisson (seamless) clones instead of alpha blends, half NORMAL_CLONE, half MIXED_CLONE. A clone costs
    # about twice a whole SBI sample at 112 px, so the share stays small.
    seamless_probability: float = 0.1
    # A JPEG pass on the copy or donor before blending: the face and the background then carry different
    # compression histories, only sometimes.
    source_jpeg_probability: float = 0.2
    source_jpeg_quality: tuple[int, int] = (50, 95)


DEFAULT_OPTIONS = SynthesisOptions()

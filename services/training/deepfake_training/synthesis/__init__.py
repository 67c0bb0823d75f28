"""Synthetic fakes made by the project: self-blended images and landmark-warped face swaps."""

from deepfake_training.synthesis.options import DEFAULT_OPTIONS, SynthesisOptions
from deepfake_training.synthesis.sbi import random_self_blend, self_blend, self_blend_video
from deepfake_training.synthesis.swap import (
    IdentityLeakError,
    SwapPairing,
    assert_identity_disjoint,
    face_swap,
    face_swap_video,
    random_face_swap,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "IdentityLeakError",
    "SwapPairing",
    "SynthesisOptions",
    "assert_identity_disjoint",
    "face_swap",
    "face_swap_video",
    "random_face_swap",
    "random_self_blend",
    "self_blend",
    "self_blend_video",
]

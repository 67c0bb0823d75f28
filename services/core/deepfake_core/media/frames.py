"""Data passed from the media layer to the face layer: what a file is, and its sampled frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_core.media.sampling import FramePlan
from deepfake_core.result import MediaType

# A media source is a path on disk or the file's bytes (workers read from object storage).
MediaSource = Path | str | bytes


@dataclass(frozen=True)
class MediaProbe:
    """Facts read from the header/container before any heavy decoding; limits are checked on these."""

    type: MediaType
    format: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    duration_s: float | None = None
    fps: float | None = None
    total_frames: int | None = None


@dataclass
class DecodedFrame:
    index: int
    timestamp_s: float
    image: np.ndarray  # BGR uint8, H x W x 3 (OpenCV convention)


@dataclass
class LoadedMedia:
    probe: MediaProbe
    frames: list[DecodedFrame]
    plan: FramePlan
    timings_ms: dict[str, float] = field(default_factory=dict)

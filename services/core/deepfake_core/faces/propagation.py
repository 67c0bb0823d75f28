"""Between key frames: which sampled frames get the detector, and how a face's box follows its landmarks.

Pure functions. A detector box sits in a fixed place relative to the face's rigid landmarks (brows, nose,
eyes); learning that place on a key frame lets a tracked frame predict the box the detector would have
drawn, so the 68-point fit on it starts where the full path's fit starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepfake_core.faces.detectors import FaceBox

# Brows, nose and eyes of the iBUG 68 layout: they move with the head, not with speech (jaw and lips do).
_RIGID = slice(17, 48)


@dataclass(frozen=True)
class BoxAnchor:
    """A detector box in the frame of the face's rigid landmarks: centre offset and size, in face scales."""

    offset_x: float
    offset_y: float
    width: float
    height: float
    score: float


def _rigid_frame(landmarks68: np.ndarray) -> tuple[float, float, float]:
    """(centre x, centre y, scale) of the rigid landmarks; the scale is their RMS distance from the centre."""
    points = np.asarray(landmarks68, dtype=np.float64)[_RIGID]
    center = points.mean(axis=0)
    scale = float(np.sqrt(((points - center) ** 2).sum(axis=1).mean()))
    return float(center[0]), float(center[1]), max(scale, 1e-6)


def anchor_box(box: FaceBox, landmarks68: np.ndarray) -> BoxAnchor:
    """Where `box` lies relative to the landmarks fitted inside it."""
    center_x, center_y, scale = _rigid_frame(landmarks68)
    box_x, box_y = box.center
    return BoxAnchor(
        (box_x - center_x) / scale, (box_y - center_y) / scale, box.width / scale, box.height / scale, box.score
    )


def box_from_landmarks(landmarks68: np.ndarray, anchor: BoxAnchor) -> FaceBox:
    """The box the detector would draw around these landmarks, by the anchor learned on a key frame."""
    center_x, center_y, scale = _rigid_frame(landmarks68)
    width, height = anchor.width * scale, anchor.height * scale
    left = center_x + anchor.offset_x * scale - width / 2.0
    top = center_y + anchor.offset_y * scale - height / 2.0
    return FaceBox(left, top, width, height, anchor.score)


def key_positions(timestamps: Sequence[float], interval: int, max_gap_s: float) -> list[int]:
    """Positions (in frame order) of the frames the detector runs on; faces are tracked across the others.

    Frames closer than `max_gap_s` form a run (a BiLSTM window: frames 1/8 s apart); in each run the
    first and the last frame are key frames, with the others spread evenly so no two are more than
    `interval` frames apart. `interval` 1 makes every frame a key frame (the full path).
    """
    if not timestamps:
        return []
    starts = run_starts(timestamps, max_gap_s)
    runs = [list(range(a, b)) for a, b in zip(starts, [*starts[1:], len(timestamps)], strict=True)]
    keys: list[int] = []
    for run in runs:
        segments = max(1, math.ceil((len(run) - 1) / max(1, interval)))
        keys += sorted({run[round(k * (len(run) - 1) / segments)] for k in range(segments + 1)})
    return keys


def run_starts(timestamps: Sequence[float], max_gap_s: float) -> list[int]:
    """Positions where a run of frames closer than `max_gap_s` to each other begins (a BiLSTM window's first frame)."""
    if not timestamps:
        return []
    return [0] + [p for p in range(1, len(timestamps)) if timestamps[p] - timestamps[p - 1] > max_gap_s]

"""Linking per-frame faces into tracks (one track per person) across sparsely sampled frames.

Pure function: optimal assignment (Hungarian) between open tracks and each frame's faces, on box
overlap plus centre distance, because with 32 frames spread over a clip a face may move further
between samples than its own width allows overlap to catch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepfake_core.faces.detectors import FaceBox

# A face may move this many face sizes between two sampled frames and still be the same face.
MAX_CENTER_SHIFT = 1.0
# ... and change its size by at most this factor (zoom, turning the head).
MAX_SIZE_RATIO = 2.0
DEFAULT_MAX_GAP = 3

_INFEASIBLE = 1e6


@dataclass
class FaceObservation:
    """One face in one sampled frame: where it is, its landmarks and its aligned crop."""

    frame_index: int
    timestamp_s: float
    box: FaceBox
    landmarks: np.ndarray  # 68x2 float32, frame pixels
    crop_rgb: np.ndarray  # size x size x 3 uint8
    matrix: np.ndarray  # 2x3, frame pixels -> crop pixels


@dataclass
class FaceTrack:
    track_id: int
    observations: list[FaceObservation] = field(default_factory=list)

    @property
    def frame_indices(self) -> list[int]:
        return [observation.frame_index for observation in self.observations]


def _face_scale(box: FaceBox) -> float:
    return math.sqrt(max(box.area, 1e-6))


def link_cost(previous: FaceBox, current: FaceBox, iou_threshold: float) -> float:
    """Cost of saying `current` continues `previous`: 1 - IoU + centre shift in face sizes.

    Pairs that overlap less than `iou_threshold` still link if the centre moved less than
    MAX_CENTER_SHIFT face sizes and the size changed less than MAX_SIZE_RATIO; otherwise infeasible.
    """
    iou = previous.iou(current)
    scale = (_face_scale(previous) + _face_scale(current)) / 2.0
    (px, py), (cx, cy) = previous.center, current.center
    shift = math.hypot(cx - px, cy - py) / scale
    if iou < iou_threshold:
        size_ratio = _face_scale(current) / _face_scale(previous)
        if shift > MAX_CENTER_SHIFT or not 1.0 / MAX_SIZE_RATIO <= size_ratio <= MAX_SIZE_RATIO:
            return _INFEASIBLE
    return (1.0 - iou) + shift


@dataclass
class _OpenTrack:
    observations: list[FaceObservation]
    first_position: int
    last_position: int


def track_faces(
    per_frame: Sequence[Sequence[FaceObservation]], iou_threshold: float, max_gap: int = DEFAULT_MAX_GAP
) -> list[FaceTrack]:
    """Group observations into tracks.

    `per_frame[k]` holds the faces of the k-th sampled frame, in frame order. A track missing from up
    to `max_gap` consecutive sampled frames resumes when its face returns near where it was last seen;
    after a longer gap a new track starts. Ids count from 0 in order of first appearance (left to
    right within a frame); observations are in frame order.
    """
    open_tracks: list[_OpenTrack] = []
    closed: list[_OpenTrack] = []
    for position, faces in enumerate(per_frame):
        still_open = []
        for track in open_tracks:
            (still_open if position - track.last_position - 1 <= max_gap else closed).append(track)
        open_tracks = still_open
        assigned = _assign(open_tracks, faces, iou_threshold)
        for face_number, face in enumerate(faces):
            track_number = assigned.get(face_number)
            if track_number is None:
                open_tracks.append(_OpenTrack([face], position, position))
            else:
                open_tracks[track_number].observations.append(face)
                open_tracks[track_number].last_position = position
    everything = closed + open_tracks
    everything.sort(key=lambda t: (t.first_position, t.observations[0].box.x, t.observations[0].box.y))
    return [FaceTrack(track_id, track.observations) for track_id, track in enumerate(everything)]


def _assign(tracks: list[_OpenTrack], faces: Sequence[FaceObservation], iou_threshold: float) -> dict[int, int]:
    """Map face number -> open-track number by minimum total link cost, skipping infeasible pairs."""
    if not tracks or not faces:
        return {}
    costs = np.array(
        [[link_cost(track.observations[-1].box, face.box, iou_threshold) for face in faces] for track in tracks]
    )
    rows, cols = linear_sum_assignment(costs)
    return {int(col): int(row) for row, col in zip(rows, cols, strict=True) if costs[row, col] < _INFEASIBLE}

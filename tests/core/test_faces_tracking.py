"""track_faces on hand-made boxes: linking, gaps, sparse motion, id order."""

from __future__ import annotations

import numpy as np
import pytest
from deepfake_core.faces.detectors import FaceBox
from deepfake_core.faces.tracking import FaceObservation, link_cost, track_faces

IOU = 0.3


def observation(frame: int, x: float, y: float, size: float = 100.0) -> FaceObservation:
    return FaceObservation(
        frame_index=frame,
        timestamp_s=frame / 30.0,
        box=FaceBox(x, y, size, size, 0.9),
        landmarks=np.zeros((68, 2), dtype=np.float32),
        crop_rgb=np.zeros((8, 8, 3), dtype=np.uint8),
        matrix=np.eye(2, 3),
    )


def positions(track) -> list[tuple[int, float]]:
    return [(o.frame_index, o.box.x) for o in track.observations]


def test_no_frames_or_no_faces_give_no_tracks() -> None:
    assert track_faces([], IOU) == []
    assert track_faces([[], [], []], IOU) == []


def test_one_steady_face_is_one_track_in_frame_order() -> None:
    frames = [[observation(10 * k, 200 + 5 * k, 100)] for k in range(8)]
    (track,) = track_faces(frames, IOU)
    assert track.track_id == 0
    assert [o.frame_index for o in track.observations] == [10 * k for k in range(8)]


def test_two_faces_keep_their_ids_whatever_the_detection_order() -> None:
    frames = []
    for k in range(6):
        left, right = observation(k, 100 + 3 * k, 100), observation(k, 600 - 3 * k, 120)
        frames.append([left, right] if k % 2 else [right, left])
    tracks = track_faces(frames, IOU)
    assert [t.track_id for t in tracks] == [0, 1]
    assert all(x < 200 for _, x in positions(tracks[0]))  # ids follow first appearance, left to right
    assert all(x > 500 for _, x in positions(tracks[1]))
    assert [len(t.observations) for t in tracks] == [6, 6]


def test_sparse_sampling_links_a_face_that_moved_past_overlap() -> None:
    """Moving 80% of its width between samples leaves IoU near 0.1, below the threshold, yet it is one face."""
    frames = [[observation(30 * k, 100 + 80 * k, 100)] for k in range(5)]
    assert frames[0][0].box.iou(frames[1][0].box) < IOU
    (track,) = track_faces(frames, IOU)
    assert len(track.observations) == 5


def test_a_jump_across_the_frame_starts_a_new_track() -> None:
    frames = [[observation(0, 100, 100)], [observation(1, 105, 100)], [observation(2, 900, 400)]]
    tracks = track_faces(frames, IOU)
    assert [positions(t) for t in tracks] == [[(0, 100), (1, 105)], [(2, 900)]]


def test_a_face_that_doubles_in_size_without_overlap_is_not_linked() -> None:
    small, large = observation(0, 100, 100, size=60), observation(1, 160, 100, size=200)
    assert small.box.iou(large.box) < IOU
    assert len(track_faces([[small], [large]], IOU)) == 2


def test_a_track_resumes_after_a_short_gap() -> None:
    frames = (
        [[observation(k, 300, 200)] for k in range(3)] + [[], [], []] + [[observation(k, 310, 205)] for k in (6, 7)]
    )
    (track,) = track_faces(frames, IOU, max_gap=3)
    assert [o.frame_index for o in track.observations] == [0, 1, 2, 6, 7]


def test_a_longer_gap_than_allowed_starts_a_new_track() -> None:
    frames = [[observation(0, 300, 200)], [], [], [], [observation(4, 300, 200)]]
    assert len(track_faces(frames, IOU, max_gap=3)) == 1
    assert len(track_faces(frames, IOU, max_gap=2)) == 2


def test_ids_follow_first_appearance_across_frames() -> None:
    frames = [[observation(0, 800, 100)], [observation(1, 800, 100), observation(1, 100, 100)]]
    tracks = track_faces(frames, IOU)
    assert positions(tracks[0]) == [(0, 800), (1, 800)]
    assert positions(tracks[1]) == [(1, 100)]


def test_assignment_is_global_not_greedy() -> None:
    """Two neighbours both step right by 70 px between samples.

    The cheapest single link is the right face's old box to the left face's new one (it is closest);
    taking it greedily would strand the left track and start a spurious third one.
    """
    previous = [observation(0, 100, 100), observation(0, 220, 100)]
    current = [observation(1, 170, 100), observation(1, 290, 100)]
    assert link_cost(previous[1].box, current[0].box, IOU) < link_cost(previous[0].box, current[0].box, IOU)
    tracks = track_faces([previous, current], IOU)
    assert len(tracks) == 2
    assert positions(tracks[0]) == [(0, 100), (1, 170)]
    assert positions(tracks[1]) == [(0, 220), (1, 290)]


def test_link_cost_prefers_overlap_and_refuses_far_boxes() -> None:
    here = FaceBox(100, 100, 100, 100, 0.9)
    near = FaceBox(110, 100, 100, 100, 0.9)
    further = FaceBox(150, 100, 100, 100, 0.9)
    far = FaceBox(400, 100, 100, 100, 0.9)
    assert link_cost(here, here, IOU) == pytest.approx(0.0)
    assert link_cost(here, near, IOU) < link_cost(here, further, IOU) < link_cost(here, far, IOU)
    assert link_cost(here, far, IOU) >= 1e6

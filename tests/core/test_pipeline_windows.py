"""run_inference and build_result on hand-made tracks: which windows get a BiLSTM score, thresholds per media type.

A recording backend stands in for the model, so each rule is checked on exact numbers without decoding media.
"""

from __future__ import annotations

import numpy as np
import pytest
from deepfake_core.contract import InferenceOutput, ModelMetadata
from deepfake_core.faces.detectors import FaceBox
from deepfake_core.faces.tracking import FaceObservation, FaceTrack
from deepfake_core.media.frames import MediaProbe
from deepfake_core.media.sampling import FramePlan
from deepfake_core.pipeline import PreparedMedia, build_result, run_inference
from deepfake_core.result import MediaType
from deepfake_core.scoring import fake_probability
from deepfake_core.settings import CoreSettings

SEQUENCE_LENGTH = 4
SEQUENCE_LOGITS = (0.0, 2.0)  # every window the stub sees gets this BiLSTM output
METADATA = ModelMetadata(input_size=8, sequence_length=SEQUENCE_LENGTH, fake_threshold=0.6, uncertain_low=0.4,
                         image_fake_threshold=0.8, image_uncertain_low=0.5)  # fmt: skip


class RecordingBackend:
    """Frame logit (0, mean pixel): a frame's score tells which crop it came from. Records (batch, frames)."""

    metadata = METADATA

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def infer(self, faces: np.ndarray) -> InferenceOutput:
        batch, frames = faces.shape[:2]
        self.calls.append((batch, frames))
        fake = faces.mean(axis=(2, 3, 4))
        return InferenceOutput(
            frame_logits=np.stack([np.zeros_like(fake), fake], axis=-1),
            sequence_logits=np.tile(np.array(SEQUENCE_LOGITS, np.float32), (batch, 1)),
            frame_cams=np.zeros((batch, frames, 1, 1), np.float32),
            attention=np.zeros((batch, frames, 1, 1), np.float32),
        )


def observation(frame_index: int) -> FaceObservation:
    return FaceObservation(
        frame_index=frame_index,
        timestamp_s=frame_index / 25.0,
        box=FaceBox(10, 10, 50, 50, 0.9),
        landmarks=np.zeros((68, 2), np.float32),
        crop_rgb=np.full((8, 8, 3), frame_index, np.uint8),
        matrix=np.eye(2, 3, dtype=np.float32),
    )


def prepared_media(groups: tuple[tuple[int, ...], ...], tracks: list[list[int]], kind=MediaType.VIDEO) -> PreparedMedia:
    indices = tuple(sorted({i for group in groups for i in group}))
    return PreparedMedia(
        probe=MediaProbe(kind, "mp4/h264", 1000, "0" * 64, 64, 64, fps=25.0, total_frames=100),
        sampling="test",
        plan=FramePlan(indices, groups),
        frames_sampled=len(indices),
        tracks=[
            FaceTrack(track_id=t, observations=[observation(i) for i in frames]) for t, frames in enumerate(tracks)
        ],
    )


WINDOWS = (tuple(range(0, 4)), tuple(range(10, 14)))  # windows:2 of 4 frames


def test_only_windows_of_the_trained_length_get_a_sequence_score():
    full = [0, 1, 2, 3, 10, 11, 12, 13]
    one_short = [0, 1, 2, 10, 11, 12, 13]  # the face was missed on frame 3
    none_full = [0, 1, 10]
    prepared = prepared_media(WINDOWS, [full, one_short, none_full])

    run = run_inference(prepared, RecordingBackend(), SEQUENCE_LENGTH)

    assert [len(t.sequence_logits) for t in run.tracks] == [2, 1, 0]
    assert run.tracks[2].sequence_logits.shape == (0, 2)
    for track, scores in zip(prepared.tracks, run.tracks, strict=True):  # every face still gets its CNN score
        expected = [obs.frame_index / 255.0 for obs in track.observations]
        assert scores.frame_logits[:, 1] == pytest.approx(expected, abs=1e-6)


def test_the_two_frame_tail_of_uniform_sampling_is_scored_by_the_cnn_only():
    group = tuple(range(0, 60, 10))  # uniform:6 with windows of 4: one window of 4 and a tail of 2
    backend = RecordingBackend()

    run = run_inference(prepared_media((group,), [list(group)]), backend, SEQUENCE_LENGTH)

    assert len(run.tracks[0].sequence_logits) == 1
    assert sorted(backend.calls) == [(1, 2), (1, 4)], "the tail goes through the model for its frame scores"
    assert run.tracks[0].frame_logits[:, 1] == pytest.approx([i / 255.0 for i in group], abs=1e-6)


def test_a_track_without_a_full_window_is_scored_by_the_cnn_alone():
    prepared = prepared_media(WINDOWS, [[0, 1, 2, 3, 10, 11, 12, 13], [0, 1, 10]])
    run = run_inference(prepared, RecordingBackend(), SEQUENCE_LENGTH)

    result = build_result(prepared, run, METADATA, CoreSettings(), explain=False)

    fused, short = result.tracks
    assert short.sequence_score is None and short.score == pytest.approx(short.frame_score)
    sequence = float(fake_probability(np.array(SEQUENCE_LOGITS)))
    assert fused.sequence_score == pytest.approx(sequence)
    weights = result.thresholds
    assert fused.score == pytest.approx(weights.cnn_weight * fused.frame_score + weights.lstm_weight * sequence)


def test_photos_are_judged_with_the_photo_thresholds_and_videos_with_the_video_ones():
    photo = prepared_media(((0,),), [[0]], kind=MediaType.IMAGE)
    video = prepared_media(WINDOWS, [[0, 1, 2, 3]])
    backend = RecordingBackend()

    photo_result = build_result(photo, run_inference(photo, backend, 1), METADATA, CoreSettings(), explain=False)
    video_result = build_result(video, run_inference(video, backend, 4), METADATA, CoreSettings(), explain=False)

    assert (photo_result.thresholds.fake, photo_result.thresholds.uncertain_low) == (0.8, 0.5)
    assert (video_result.thresholds.fake, video_result.thresholds.uncertain_low) == (0.6, 0.4)
    assert photo_result.tracks[0].sequence_score is None, "a photo never gets a BiLSTM score, even at length 1"

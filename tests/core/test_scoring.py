"""Fusion, thresholds and the decision rule."""

import math

import numpy as np
import pytest
from deepfake_core.contract import ModelMetadata
from deepfake_core.result import MediaType, Verdict
from deepfake_core.scoring import (
    confidence_for,
    fake_probability,
    fuse,
    is_sequence_window,
    resolve_thresholds,
    split_windows,
    verdict_for,
)
from deepfake_core.settings import CoreSettings


def test_fake_probability_is_the_softmax_of_the_fake_class():
    logits = np.array([[0.0, 0.0], [1.0, 3.0], [1000.0, -1000.0]])
    probs = fake_probability(logits)
    assert probs[0] == pytest.approx(0.5)
    assert probs[1] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert probs[2] == pytest.approx(0.0) and np.isfinite(probs).all()


def test_model_metadata_supplies_thresholds_unless_settings_override():
    metadata = ModelMetadata(fake_threshold=0.7, uncertain_low=0.4, cnn_weight=0.6, lstm_weight=0.4)
    from_model = resolve_thresholds(CoreSettings(), metadata)
    assert (from_model.fake, from_model.uncertain_low) == (0.7, 0.4)
    overridden = resolve_thresholds(CoreSettings(fake_threshold=0.9, cnn_weight=0.3, lstm_weight=0.1), metadata)
    assert overridden.fake == 0.9 and overridden.uncertain_low == 0.4
    assert overridden.cnn_weight == pytest.approx(0.75) and overridden.lstm_weight == pytest.approx(0.25)


def test_uncertain_band_never_rises_above_the_fake_threshold():
    thresholds = resolve_thresholds(CoreSettings(fake_threshold=0.3), ModelMetadata(uncertain_low=0.5))
    assert thresholds.uncertain_low == 0.3


def test_fusion_weights_cnn_and_lstm_and_images_use_cnn_only():
    thresholds = resolve_thresholds(CoreSettings(), ModelMetadata(cnn_weight=0.6, lstm_weight=0.4))
    assert fuse(0.9, 0.4, thresholds) == pytest.approx(0.6 * 0.9 + 0.4 * 0.4)
    assert fuse(0.9, None, thresholds) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("score", "verdict"), [(0.95, Verdict.FAKE), (0.7, Verdict.FAKE), (0.5, Verdict.UNCERTAIN), (0.39, Verdict.REAL)]
)
def test_verdict_regions(score, verdict):
    thresholds = resolve_thresholds(CoreSettings(), ModelMetadata(fake_threshold=0.7, uncertain_low=0.4))
    assert verdict_for(score, thresholds) is verdict


def test_confidence_grows_away_from_the_boundary():
    thresholds = resolve_thresholds(CoreSettings(), ModelMetadata(fake_threshold=0.6, uncertain_low=0.4))
    assert confidence_for(0.6, Verdict.FAKE, thresholds) == pytest.approx(0.0)
    assert confidence_for(1.0, Verdict.FAKE, thresholds) == pytest.approx(1.0)
    assert confidence_for(0.2, Verdict.REAL, thresholds) == pytest.approx(0.5)
    assert confidence_for(0.5, Verdict.UNCERTAIN, thresholds) == 0.0


def test_tracks_are_cut_into_sequence_sized_windows_and_only_full_ones_are_sequences():
    positions = list(range(70))
    windows = split_windows(positions, ((tuple(range(70)),)), list(range(70)), sequence_length=30)
    assert [len(w) for w in windows] == [30, 30, 10]
    assert [is_sequence_window(w, 30) for w in windows] == [True, True, False]


def test_uniform_32_is_one_sequence_and_a_two_frame_tail_that_is_not():
    positions = list(range(32))
    windows = split_windows(positions, (tuple(range(0, 320, 10)),), list(range(0, 320, 10)), sequence_length=30)
    assert [(len(w), is_sequence_window(w, 30)) for w in windows] == [(30, True), (2, False)]


def test_window_sampling_keeps_each_run_as_one_window():
    groups = (tuple(range(0, 30)), tuple(range(100, 130)))
    frame_indices = [*range(0, 30), *range(100, 130, 2)]  # the face was missed on half the second run's frames
    positions = list(range(len(frame_indices)))
    windows = split_windows(positions, groups, frame_indices, sequence_length=30)
    assert [len(w) for w in windows] == [30, 15]
    assert windows[1][0] == 30
    assert [is_sequence_window(w, 30) for w in windows] == [True, False], "a window with missed faces is no sequence"


def test_a_group_longer_than_the_sequence_is_cut_into_sequences():
    groups = (tuple(range(0, 45)), tuple(range(100, 130)))  # e.g. decoded stand-in frames grouped together
    frame_indices = [*range(0, 45), *range(100, 130)]
    windows = split_windows(list(range(75)), groups, frame_indices, sequence_length=30)
    assert [len(w) for w in windows] == [30, 15, 30]
    assert max(len(w) for w in windows) <= 30


def test_photos_use_the_models_photo_thresholds_and_videos_do_not():
    metadata = ModelMetadata(fake_threshold=0.6, uncertain_low=0.4, image_fake_threshold=0.8, image_uncertain_low=0.5)
    photo = resolve_thresholds(CoreSettings(), metadata, MediaType.IMAGE)
    video = resolve_thresholds(CoreSettings(), metadata, MediaType.VIDEO)
    assert (photo.fake, photo.uncertain_low) == (0.8, 0.5)
    assert (video.fake, video.uncertain_low) == (0.6, 0.4)
    assert resolve_thresholds(CoreSettings(), metadata) == video, "the media type defaults to video"


def test_photos_fall_back_to_the_video_thresholds_when_not_calibrated_apart():
    metadata = ModelMetadata(fake_threshold=0.6, uncertain_low=0.4, image_fake_threshold=0.7)
    photo = resolve_thresholds(CoreSettings(), metadata, MediaType.IMAGE)
    assert (photo.fake, photo.uncertain_low) == (0.7, 0.4)
    plain = resolve_thresholds(CoreSettings(), ModelMetadata(fake_threshold=0.6), MediaType.IMAGE)
    assert plain.fake == 0.6


def test_settings_override_photo_thresholds_general_then_photo_specific():
    metadata = ModelMetadata(fake_threshold=0.6, uncertain_low=0.4, image_fake_threshold=0.8, image_uncertain_low=0.5)
    both = resolve_thresholds(CoreSettings(fake_threshold=0.9, uncertain_low=0.3), metadata, MediaType.IMAGE)
    assert (both.fake, both.uncertain_low) == (0.9, 0.3), "DEEPFAKE_FAKE_THRESHOLD applies to photos too"
    specific = CoreSettings(fake_threshold=0.9, image_fake_threshold=0.75, image_uncertain_low=0.45)
    photo = resolve_thresholds(specific, metadata, MediaType.IMAGE)
    assert (photo.fake, photo.uncertain_low) == (0.75, 0.45)
    video = resolve_thresholds(specific, metadata, MediaType.VIDEO)
    assert (video.fake, video.uncertain_low) == (0.9, 0.4), "photo settings leave videos alone"


def test_photo_uncertain_band_never_rises_above_the_photo_fake_threshold():
    metadata = ModelMetadata(fake_threshold=0.9, uncertain_low=0.6, image_fake_threshold=0.5)
    photo = resolve_thresholds(CoreSettings(), metadata, MediaType.IMAGE)
    assert (photo.fake, photo.uncertain_low) == (0.5, 0.5)

"""The synthetic fakes: SBI and swaps stay inside the face, videos drift, swaps respect the identity split."""

from __future__ import annotations

import numpy as np
import pytest
from deepfake_training.face_cache import FaceCache
from deepfake_training.samples import FaceSynthesizer, load_tracks, synthetic_clip_set
from deepfake_training.synthesis.masks import face_region, hull_mask
from deepfake_training.synthesis.sbi import random_self_blend, sample_blend_parameters, self_blend, self_blend_video
from deepfake_training.synthesis.swap import (
    IdentityLeakError,
    SwapPairing,
    assert_identity_disjoint,
    random_face_swap,
)


@pytest.fixture(scope="module")
def video_faces(tiny_cache: FaceCache):
    return tiny_cache.load("local-cap12_edit").main_track()


@pytest.fixture(scope="module")
def photo_faces(tiny_cache: FaceCache):
    return tiny_cache.load("local-sample1")


def _changed(fake: np.ndarray, real: np.ndarray) -> np.ndarray:
    return np.abs(fake.astype(int) - real.astype(int)).max(axis=-1) > 0


def test_self_blend_changes_only_the_face(video_faces) -> None:
    rng = np.random.default_rng(0)
    for k in range(12):
        crop, landmarks = video_faces.crops[k], video_faces.landmarks[k]
        fake, mask = random_self_blend(crop, landmarks, rng)
        region = face_region(landmarks, crop.shape[:2]) > 0
        assert fake.shape == crop.shape and fake.dtype == np.uint8
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert not (mask > 1e-3)[~region].any(), "the blend mask leaves the face region"
        assert not _changed(fake, crop)[~region].any(), "pixels outside the face changed"
        assert _changed(fake, crop)[region].mean() > 0.05, "the blend left the face untouched"


def test_face_region_covers_the_hull_and_stays_near_it(video_faces) -> None:
    landmarks = video_faces.landmarks[0]
    hull = hull_mask(landmarks, (64, 64)) > 0
    region = face_region(landmarks, (64, 64)) > 0
    assert (region | ~hull).all()
    assert 1.0 < region.sum() / hull.sum() < 1.8


def test_blend_parameters_drift_over_a_video(video_faces) -> None:
    frames, landmarks = video_faces.crops[:12], video_faces.landmarks[:12]
    fakes, masks = self_blend_video(frames, landmarks, np.random.default_rng(3), drift=1.0, flicker=0.3)
    assert fakes.shape == frames.shape and masks.shape == frames.shape[:3]
    mass = masks.reshape(len(masks), -1).sum(axis=1)
    assert np.ptp(mass) > 0.02 * mass.mean(), "the blend does not change over the clip"
    smooth, smooth_masks = self_blend_video(frames, landmarks, np.random.default_rng(3), drift=0.0, flicker=0.0)
    assert np.abs(np.diff(smooth_masks.reshape(12, -1).sum(axis=1))).max() < np.abs(np.diff(mass)).max()


def test_same_parameters_give_the_same_fake(video_faces) -> None:
    params = sample_blend_parameters(np.random.default_rng(7))
    crop, landmarks = video_faces.crops[2], video_faces.landmarks[2]
    first, _ = self_blend(crop, landmarks, params)
    second, _ = self_blend(crop, landmarks, params)
    assert np.array_equal(first, second)


def test_swap_pastes_the_donor_inside_the_target_face(video_faces, photo_faces) -> None:
    rng = np.random.default_rng(1)
    target, target_landmarks = video_faces.crops[0], video_faces.landmarks[0]
    fake, mask = random_face_swap(target, target_landmarks, photo_faces.crops[0], photo_faces.landmarks[0], rng)
    region = face_region(target_landmarks, target.shape[:2]) > 0
    assert not (mask > 1e-3)[~region].any()
    assert not _changed(fake, target)[~region].any()
    inner = hull_mask(target_landmarks, target.shape[:2], forehead=0.0) > 0
    difference = np.abs(fake.astype(float) - target.astype(float)).mean(axis=-1)
    assert difference[inner].mean() > 4.0, "the donor's face did not replace the target's"


def test_swap_pairing_only_offers_other_identities_of_the_same_split() -> None:
    pairing = SwapPairing.of(["a", "a", "b", "c", "d"], ["train", "train", "train", "test", "test"])
    assert pairing.donors_for(0) == [2]
    assert pairing.donors_for(2) == [0, 1]
    assert pairing.donors_for(3) == [4]


def test_an_identity_in_two_splits_is_refused() -> None:
    with pytest.raises(IdentityLeakError, match="franck"):
        assert_identity_disjoint(["franck", "cap13", "franck"], ["train", "test", "test"])
    with pytest.raises(IdentityLeakError):
        SwapPairing.of(["x", "x"], ["train", "val"])


def test_held_out_clips_come_from_held_out_identities_only(tiny_cache: FaceCache, local_records) -> None:
    test_records = [r for r in local_records if r.split == "test"]
    tracks = load_tracks(tiny_cache, test_records)
    clips = synthetic_clip_set("test", tracks, 64, clip_length=8, stride=8, seed=0)
    assert set(clips.identities) <= {r.identity for r in test_records}
    assert {"real", "sbi", "swap"} == set(clips.manipulations)
    assert (clips.labels[np.array(clips.manipulations) == "real"] == 0).all()
    assert (clips.labels[np.array(clips.manipulations) != "real"] == 1).all()
    video_clips = [f for f, image in zip(clips.faces, clips.is_image, strict=True) if not image]
    assert video_clips and all(f.shape == (8, 64, 64, 3) for f in video_clips)
    synthesizer = FaceSynthesizer(tracks, 64)
    for position, track in enumerate(tracks):
        donors = {tracks[d].identity for d in synthesizer.donors(position)}
        assert track.identity not in donors and donors <= {r.identity for r in test_records}


def test_a_mixed_split_cannot_make_clips(tiny_cache: FaceCache, local_records) -> None:
    tracks = load_tracks(tiny_cache, [r for r in local_records if r.key in ("local-cap12_edit", "local-cap13_edit2")])
    tracks[1].identity = tracks[0].identity  # the same person, claimed by val and test
    with pytest.raises(IdentityLeakError):
        synthetic_clip_set("x", tracks, 64, clip_length=8, stride=8, seed=0)

"""The synthetic fakes: SBI and swaps stay inside the face, videos drift, swaps respect the identity split."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import FaceSynthesizer, load_tracks, synthetic_clip_set
from deepfake_training.synthesis.blending import BLEND_MODES, composite
from deepfake_training.synthesis.masks import (
    MASK_KINDS,
    blend_mask,
    face_region,
    face_width,
    hull_mask,
    sample_mask_kind,
)
from deepfake_training.synthesis.options import DEFAULT_OPTIONS, SynthesisOptions
from deepfake_training.synthesis.quality import downscale_upscale, matching_factor, sharpness
from deepfake_training.synthesis.sbi import random_self_blend, sample_blend_parameters, self_blend, self_blend_video
from deepfake_training.synthesis.swap import (
    IdentityLeakError,
    SwapPairing,
    SwapParameters,
    assert_identity_disjoint,
    face_swap,
    random_face_swap,
    sample_swap_parameters,
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
    tracks = load_tracks(tiny_cache, [r for r in local_records if r.key in ("local-franck", "local-cap12_edit")])
    assert len({t.split for t in tracks}) == 2
    tracks[1].identity = tracks[0].identity  # the same person, claimed by train and test
    with pytest.raises(IdentityLeakError):
        synthetic_clip_set("x", tracks, 64, clip_length=8, stride=8, seed=0)


# --- variations that keep shortcuts out: partial masks, Poisson clones, resolution and compression -------

# dlib 68-point groups a partial mask must cover, and groups it must leave alone.
EYES, MOUTH, BROWS, LOWER_NOSE = range(36, 48), range(48, 68), range(17, 27), range(31, 36)
IMAGE_LEFT = (*range(36, 42), 17, 19, 21, 48)  # the subject's right eye, brow and mouth corner: smaller x
IMAGE_RIGHT = (*range(42, 48), 22, 24, 26, 54)
PART_COVERAGE = {
    "eyes": ((*EYES, *BROWS), (*MOUTH, *LOWER_NOSE, 8)),
    "mouth": (MOUTH, (*EYES, *BROWS, 27, 28)),
    "nose_mouth": ((*LOWER_NOSE, *MOUTH), (*EYES, *BROWS)),
    "left_half": (IMAGE_LEFT, IMAGE_RIGHT),
    "right_half": (IMAGE_RIGHT, IMAGE_LEFT),
}


def _upscaled(landmarks: np.ndarray, factor: int = 2) -> np.ndarray:
    """Landmarks of the 64 px cache on a crop `factor` x larger: part masks are drawn at training sizes."""
    return (np.asarray(landmarks, dtype=np.float64) + 0.5) * factor - 0.5


def _values_at(mask: np.ndarray, landmarks: np.ndarray, points) -> np.ndarray:
    return np.array([mask[int(round(landmarks[k, 1])), int(round(landmarks[k, 0]))] for k in points])


@pytest.mark.parametrize("kind", sorted(PART_COVERAGE))
def test_a_partial_mask_covers_its_landmarks_and_not_the_rest(video_faces, photo_faces, kind: str) -> None:
    rng = np.random.default_rng(4)
    inside, outside = PART_COVERAGE[kind]
    for landmarks in (video_faces.landmarks[0], video_faces.landmarks[25], photo_faces.landmarks[0]):
        landmarks = _upscaled(landmarks)
        jitter = rng.normal(0.0, 0.01 * face_width(landmarks), size=(68, 2))  # the deformation SBI uses
        mask = blend_mask(landmarks, (128, 128), grow=0.0, blur=0.03, landmark_jitter=jitter, kind=kind)
        hull = blend_mask(landmarks, (128, 128), grow=0.0, blur=0.03, landmark_jitter=jitter)
        assert _values_at(mask, landmarks, inside).min() > 0.5, f"{kind} misses its own landmarks"
        assert _values_at(mask, landmarks, outside).max() < 0.1, f"{kind} reaches landmarks it must not"
        assert (mask > 0.5).sum() < 0.8 * (hull > 0.5).sum(), f"{kind} is not a part of the face"
        assert not (mask > 1e-3)[face_region(landmarks, (128, 128)) == 0].any(), f"{kind} leaves the face"


def test_the_halves_split_the_hull() -> None:
    landmarks = np.array([[20.0 + 88.0 * k / 16, 40.0 + 60.0 * np.sin(np.pi * k / 16)] for k in range(17)]
                         + [[64.0, 60.0]] * 51)  # fmt: skip
    landmarks[27], landmarks[8] = [64.0, 40.0], [64.0, 100.0]  # a vertical midline at x = 64
    left = blend_mask(landmarks, (128, 128), 0.0, 0.0, forehead=0.0, kind="left_half") > 0.5
    right = blend_mask(landmarks, (128, 128), 0.0, 0.0, forehead=0.0, kind="right_half") > 0.5
    hull = blend_mask(landmarks, (128, 128), 0.0, 0.0, forehead=0.0) > 0.5
    assert not (left & right).any() and (left | right).sum() >= hull.sum() - 60  # the midline column at most
    assert np.nonzero(left)[1].max() < 64 <= np.nonzero(right)[1].min()


def test_mask_kinds_are_drawn_by_their_weights() -> None:
    rng = np.random.default_rng(0)
    draws = [sample_mask_kind(rng, DEFAULT_OPTIONS.mask_kinds) for _ in range(4000)]
    weights = dict(DEFAULT_OPTIONS.mask_kinds)
    assert set(weights) == set(MASK_KINDS) and max(weights, key=weights.get) == "hull"
    for kind, weight in weights.items():
        assert abs(draws.count(kind) / len(draws) - weight / sum(weights.values())) < 0.025, kind


def test_every_mask_kind_makes_a_working_self_blend(video_faces) -> None:
    crop, landmarks = video_faces.crops[6], video_faces.landmarks[6]
    params = replace(sample_blend_parameters(np.random.default_rng(2)), alpha=1.0)
    areas = {}
    for kind in MASK_KINDS:
        fake, region = self_blend(crop, landmarks, replace(params, mask_kind=kind, swap_roles=False))
        assert _changed(fake, crop).any() and (region > 0.5).any(), kind
        areas[kind] = (region > 0.5).sum()
    assert max(areas, key=areas.get) == "hull" and areas["mouth"] < 0.5 * areas["hull"]


@pytest.mark.parametrize("mode", ["normal_clone", "mixed_clone"])
def test_a_seamless_clone_changes_the_image_only_inside_its_mask(video_faces, mode: str) -> None:
    crop, landmarks = video_faces.crops[4], video_faces.landmarks[4]
    # A copy shifted by two pixels and 40 grey levels brighter: texture and colour both differ.
    source = np.clip(np.roll(crop, 2, axis=1).astype(np.float32) + 40.0, 0, 255)
    mask = blend_mask(landmarks, crop.shape[:2], grow=0.0, blur=0.03)
    blended, weight = composite(source, crop, mask, mode)
    fake = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    changed, hard = _changed(fake, crop), mask > 0.5
    near = cv2.dilate(hard.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert changed.sum() > 0.5 * hard.sum(), "the clone left the face alone"
    assert not changed[~near].any(), "the clone changed pixels away from its mask"
    assert (weight > 0)[changed].all(), "the returned region misses changed pixels"
    # Poisson blending takes its colours at the seam from the target: the +40 offset is gone there,
    # where an alpha blend keeps all of it.
    alpha, _ = composite(source, crop, mask, "alpha")
    seam = hard & ~(cv2.erode(hard.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    offset = np.abs(blended - crop.astype(np.float32)).mean(axis=-1)[seam].mean()
    assert offset < 0.5 * np.abs(alpha - crop.astype(np.float32)).mean(axis=-1)[seam].mean()


def _at_128(crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 64 px cached face at 128 px, near the training size: small parts get enough pixels to clone."""
    return cv2.resize(crop, (128, 128), interpolation=cv2.INTER_LINEAR), _upscaled(landmarks)


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_the_region_marks_the_changed_pixels_for_every_blend(video_faces, photo_faces, mode: str) -> None:
    rng = np.random.default_rng(11)
    cases = [(kind, False) for kind in MASK_KINDS] + [("hull", True)]  # swapped SBI roles: hull blends only
    coverage = []
    for k, (kind, swap_roles) in enumerate(cases):
        crop, landmarks = _at_128(video_faces.crops[3 * k], video_faces.landmarks[3 * k])
        photo = k % len(photo_faces.crops)
        donor = _at_128(photo_faces.crops[photo], photo_faces.landmarks[photo])
        sbi = replace(sample_blend_parameters(rng), blend_mode=mode, mask_kind=kind, swap_roles=swap_roles)
        swap = replace(sample_swap_parameters(rng), blend_mode=mode, mask_kind=kind)
        for fake, region in (self_blend(crop, landmarks, sbi), face_swap(crop, landmarks, *donor, swap)):
            # Changed: by more than a rounding step; marked: at least 1% of the pixel is the blended face.
            changed = np.abs(fake.astype(int) - crop.astype(int)).max(axis=-1) > 1
            if changed.sum() >= 20:  # a Poisson clone of a barely jittered copy can change next to nothing
                coverage.append((region >= 0.01)[changed].mean())
    assert len(coverage) >= 2 * len(cases) - 2, "too few blends changed the image to judge their regions"
    assert min(coverage) >= 0.9, coverage


def test_resolution_jitter_removes_high_frequencies(photo_faces, video_faces) -> None:
    for faces in (photo_faces, video_faces):
        crop, landmarks = faces.crops[0], faces.landmarks[0]
        assert downscale_upscale(crop, 1.0) is crop
        energy = [sharpness(downscale_upscale(crop, f), landmarks) for f in (1.0, 0.8, 0.6, 0.4)]
        assert energy == sorted(energy, reverse=True) and energy[1] < 0.8 * energy[0] and energy[3] < 0.3 * energy[0]


def test_a_donor_sharper_than_its_target_is_softened_to_match(video_faces, photo_faces) -> None:
    donor, donor_landmarks = photo_faces.crops[0], photo_faces.landmarks[0]
    assert matching_factor(donor, donor_landmarks, donor, donor_landmarks) == 1.0
    assert matching_factor(donor, donor_landmarks, downscale_upscale(donor, 0.55), donor_landmarks) in (0.55, 0.7)
    target, target_landmarks = video_faces.crops[0], video_faces.landmarks[0]
    soft = downscale_upscale(target, 0.5)
    params = SwapParameters(mask_grow=0.0, colour_match=False)
    fake, _ = face_swap(soft, target_landmarks, donor, donor_landmarks, params)
    matched, _ = face_swap(soft, target_landmarks, donor, donor_landmarks, replace(params, match_sharpness=True))
    assert sharpness(matched, target_landmarks) < 0.7 * sharpness(fake, target_landmarks)
    assert abs(np.log(sharpness(matched, target_landmarks) / sharpness(soft, target_landmarks))) < abs(
        np.log(sharpness(fake, target_landmarks) / sharpness(soft, target_landmarks))
    ), "matching brought the pasted face closer to the target's sharpness"


def test_sbi_skips_the_blur_and_sharpen_at_the_configured_rate() -> None:
    rng = np.random.default_rng(0)
    untouched = np.mean([sample_blend_parameters(rng).sharpness == 0.0 for _ in range(3000)])
    assert abs(untouched - (1.0 - DEFAULT_OPTIONS.sharpen_probability)) < 0.03
    for probability in (0.0, 1.0):
        options = SynthesisOptions(sharpen_probability=probability)
        shares = [sample_blend_parameters(rng, options=options).sharpness == 0.0 for _ in range(200)]
        assert np.mean(shares) == 1.0 - probability


def test_variation_rates_follow_the_options() -> None:
    rng = np.random.default_rng(1)
    blends = [sample_blend_parameters(rng) for _ in range(3000)]
    swaps = [sample_swap_parameters(rng) for _ in range(3000)]
    assert abs(np.mean([b.blend_mode != "alpha" for b in blends]) - DEFAULT_OPTIONS.seamless_probability) < 0.02
    assert abs(np.mean([b.source_jpeg > 0 for b in blends]) - DEFAULT_OPTIONS.source_jpeg_probability) < 0.025
    assert abs(np.mean([s.match_sharpness for s in swaps]) - DEFAULT_OPTIONS.donor_match_probability) < 0.03
    assert not any(b.swap_roles for b in blends if b.mask_kind != "hull")
    low, high = DEFAULT_OPTIONS.resolution_range
    assert all(low <= b.resolution <= high for b in blends)


def test_the_same_seed_gives_the_same_fakes(video_faces, photo_faces) -> None:
    # Every path drawn often: clones, JPEG passes, resolution jitter, matched donors.
    options = SynthesisOptions(seamless_probability=0.5, source_jpeg_probability=0.5, resolution_probability=0.8)
    crop, landmarks = video_faces.crops[8], video_faces.landmarks[8]
    donor = photo_faces.crops[0], photo_faces.landmarks[0]
    outputs = []
    for seed in range(8):
        first = random_self_blend(crop, landmarks, np.random.default_rng(seed), options=options)
        again = random_self_blend(crop, landmarks, np.random.default_rng(seed), options=options)
        swapped = random_face_swap(crop, landmarks, *donor, np.random.default_rng(seed), options=options)
        swapped_again = random_face_swap(crop, landmarks, *donor, np.random.default_rng(seed), options=options)
        for a, b in ((first, again), (swapped, swapped_again)):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), seed
        outputs.append(first[0])
    assert len({o.tobytes() for o in outputs}) == len(outputs), "different seeds gave the same fake"
    clip = self_blend_video(video_faces.crops[:6], video_faces.landmarks[:6], np.random.default_rng(5), options=options)
    clip_again = self_blend_video(
        video_faces.crops[:6], video_faces.landmarks[:6], np.random.default_rng(5), options=options
    )
    assert np.array_equal(clip[0], clip_again[0]) and np.array_equal(clip[1], clip_again[1])

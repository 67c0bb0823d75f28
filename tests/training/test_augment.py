"""Augmentation: JPEG, single or double, hits a real and its paired fake alike, and the same seed repeats it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from deepfake_training.config import TrainingConfig
from deepfake_training.data import augment as augment_module
from deepfake_training.data.augment import augment, compress, jpeg_recompress, resize_face
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import (
    FaceSynthesizer,
    FrameDataset,
    build_frame_pool,
    load_tracks,
    resized_landmarks,
)
from deepfake_training.datasets import MediaRecord
from deepfake_training.synthesis.masks import face_region


@pytest.fixture(scope="module")
def train_tracks(tiny_cache: FaceCache, local_records: list[MediaRecord]):
    return load_tracks(tiny_cache, [r for r in local_records if r.split == "train"])


@pytest.fixture(scope="module")
def face(tiny_cache: FaceCache) -> np.ndarray:
    return tiny_cache.load("local-cap12_edit").main_track().crops[0]


def _final_quality(seed: int, config: TrainingConfig) -> int:
    """The quality of the last JPEG pass: `compress` draws it first."""
    return int(np.random.default_rng(seed).integers(config.jpeg_quality_min, config.jpeg_quality_max + 1))


def _doubles(face: np.ndarray, seeds: int) -> list[bool]:
    """Per seed: whether `compress` did more than one JPEG pass at its final quality."""
    config = TrainingConfig()
    return [
        not np.array_equal(compress(face, np.random.default_rng(seed), config),
                           jpeg_recompress(face, _final_quality(seed, config)))
        for seed in range(seeds)
    ]  # fmt: skip


def test_jpeg_is_a_double_compression_at_its_rate(face: np.ndarray) -> None:
    doubles = _doubles(face, 300)
    assert abs(np.mean(doubles) - augment_module.DOUBLE_JPEG_PROBABILITY) < 0.08


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_the_double_compression_rate_is_the_constant(
    face: np.ndarray, monkeypatch: pytest.MonkeyPatch, probability: float
) -> None:
    monkeypatch.setattr(augment_module, "DOUBLE_JPEG_PROBABILITY", probability)
    doubles = _doubles(face, 40)
    assert np.mean(doubles) >= 0.9 if probability else not any(doubles)


def test_the_same_seed_gives_the_same_augmentation(face: np.ndarray) -> None:
    config = TrainingConfig(jpeg_probability=1.0)
    first = [augment(face, np.random.default_rng(seed), config) for seed in range(6)]
    again = [augment(face, np.random.default_rng(seed), config) for seed in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({image.tobytes() for image in first}) == len(first)


@pytest.mark.parametrize("double", [0.0, 1.0])
def test_a_real_and_its_fake_get_the_same_compression(
    train_tracks, monkeypatch: pytest.MonkeyPatch, double: float
) -> None:
    """Paired augmentation (one draw per real/fake pair) already compresses both alike: away from the face
    the two images stay identical, though both went through JPEG, single or double."""
    monkeypatch.setattr(augment_module, "DOUBLE_JPEG_PROBABILITY", double)
    size = 128  # the 64 px cache upscaled: enough JPEG blocks away from the face
    config = TrainingConfig(input_size=size, swap_fraction=0.5, jpeg_probability=1.0, flip_probability=0.0,
                            rotation_probability=0.0, colour_jitter_probability=0.0)  # fmt: skip
    pool = build_frame_pool(train_tracks, config, seed=0)
    dataset = FrameDataset(pool, FaceSynthesizer(train_tracks, size), config, seed=0)
    checked = 0
    for pair in range(min(len(pool) // 2, 10)):
        real_item, fake_item = pool[2 * pair], pool[2 * pair + 1]
        assert real_item.kind == "real" and fake_item.kind in ("sbi", "swap")
        assert (real_item.track, real_item.frame) == (fake_item.track, fake_item.frame)
        real, fake = (np.rint(dataset[k][0].numpy() * 255).astype(int) for k in (2 * pair, 2 * pair + 1))
        landmarks = resized_landmarks(train_tracks[fake_item.track].landmarks[fake_item.frame], 64, size)
        blocks = (face_region(landmarks, (size, size)) > 0).reshape(size // 16, 16, size // 16, 16).any(axis=(1, 3))
        # JPEG codes 16 x 16 blocks (colour at half resolution, upsampled across block borders), and a second
        # pass re-codes a neighbour block whose border pixels the first pass's upsampling moved.
        if double:
            blocks = cv2.dilate(blocks.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        touched = blocks.repeat(16, axis=0).repeat(16, axis=1).astype(np.uint8)
        away = ~(cv2.dilate(touched, np.ones((5, 5), np.uint8)) > 0)
        if away.sum() < 256:
            continue
        raw = resize_face(train_tracks[real_item.track].crops[real_item.frame], size).transpose(2, 0, 1).astype(int)
        assert np.array_equal(real[:, away], fake[:, away]), "the pair was compressed differently"
        assert not np.array_equal(real[:, away], raw[:, away]), "the real was not compressed"
        assert not np.array_equal(real, fake), "the fake is no fake"
        checked += 1
    assert checked >= 5

"""Heatmaps that point at the manipulation: the region loss, the manipulated region travelling with the image
through augmentation and into each training sample, and the localisation measure of a model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.data.augment import augment, augment_with_region, region_grid
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import FaceSynthesizer, FrameDataset, build_frame_pool, load_tracks
from deepfake_training.datasets import MediaRecord
from deepfake_training.evaluation.localisation import cam_scores, measure_localisation
from deepfake_training.learning.losses import region_loss


def test_region_loss_is_the_cross_entropy_from_the_region_to_the_cam_softmax() -> None:
    regions = torch.zeros(3, 2, 2)
    regions[0, 0, 0] = 1.0  # one manipulated cell
    regions[1] = torch.tensor([[0.5, 0.5], [0.0, 0.0]])  # half of the top row each
    flat = torch.zeros(3, 2, 2)  # evidence spread evenly: -log(1/4) whatever the target
    assert region_loss(flat, regions).item() == pytest.approx(math.log(4))

    peaked = torch.zeros(3, 2, 2)
    peaked[0, 0, 0] = peaked[1, 0, 0] = 2.0
    expected_first = -math.log(math.exp(2) / (math.exp(2) + 3))
    expected_second = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 3)) + math.log(1 / (math.exp(2) + 3)))
    assert region_loss(peaked, regions).item() == pytest.approx((expected_first + expected_second) / 2, rel=1e-5)
    assert region_loss(peaked, regions).item() < region_loss(flat, regions).item()

    shifted = peaked + 5.0  # the CAM's mean is the fake logit: the loss must not care about it
    assert region_loss(shifted, regions).item() == pytest.approx(region_loss(peaked, regions).item(), rel=1e-5)
    none = torch.zeros(2, 2, 2)
    cams = torch.randn(2, 2, 2, requires_grad=True)
    loss = region_loss(cams, none)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(cams.grad == 0)


def test_the_region_follows_the_flip_and_rotation_of_its_image() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[8:24, 6:20] = 255  # a bright patch in the top-left corner, and its region
    region = np.zeros((64, 64), dtype=np.float32)
    region[8:24, 6:20] = 1.0
    config = TrainingConfig(input_size=64, flip_probability=1.0, rotation_probability=1.0, rotation_degrees=15.0,
                            jpeg_probability=0.0, colour_jitter_probability=0.0, brightness_probability=0.0,
                            noise_probability=0.0)  # fmt: skip
    moved, moved_region = augment_with_region(image, region, np.random.default_rng(5), config)
    bright = moved[..., 0] > 127
    assert bright[:, 32:].sum() > 0.9 * bright.sum(), "the flip moved the patch to the right half"
    assert np.corrcoef(bright.ravel().astype(float), (moved_region > 0.5).ravel().astype(float))[0, 1] > 0.9
    # The same draws as plain augmentation: adding regions changes no training image.
    assert np.array_equal(moved, augment(image, np.random.default_rng(5), config))


def test_region_grid_averages_onto_the_cam_grid() -> None:
    region = np.zeros((112, 112), dtype=np.float32)
    region[:28, :28] = 1.0
    grid = region_grid(region, 4)
    assert grid.shape == (4, 4) and grid[0, 0] == pytest.approx(1.0) and grid.sum() == pytest.approx(1.0)
    assert np.all(region_grid(None, 4) == 0)


@pytest.fixture(scope="module")
def train_tracks(tiny_cache: FaceCache, local_records: list[MediaRecord]):
    return load_tracks(tiny_cache, [r for r in local_records if r.split == "train"])


def test_synthetic_fakes_carry_their_region_and_reals_none(train_tracks) -> None:
    config = TrainingConfig(input_size=128, swap_fraction=0.5)  # a 4 x 4 CAM grid
    pool = build_frame_pool(train_tracks, config, seed=0)
    dataset = FrameDataset(pool, FaceSynthesizer(train_tracks, 128), config, seed=0)
    kinds_seen = set()
    for index in range(min(len(pool), 24)):
        image, label, _kind, grid = dataset[index]
        assert image.shape == (3, 128, 128) and grid.shape == (4, 4)
        kinds_seen.add(pool[index].kind)
        if pool[index].kind == "real":
            assert label == 0 and torch.all(grid == 0)
        else:
            assert label == 1 and 0.0 < grid.sum() < 16 and grid.max() <= 1.0
            centre = grid[1:3, 1:3].mean()
            assert centre > grid.mean(), "the manipulated region is the face, in the middle of the crop"
    assert {"real", "sbi"} <= kinds_seen


def test_cam_scores_measure_the_evidence_inside_the_region() -> None:
    grid = np.zeros((4, 4), dtype=np.float32)
    grid[1:3, 1:3] = 1.0
    cam = np.full((4, 4), -1.0, dtype=np.float32)
    cam[1, 1], cam[0, 0] = 3.0, 1.0
    mass, peak = cam_scores(cam, grid)
    assert mass == pytest.approx(0.75) and peak
    mass, peak = cam_scores(np.full((4, 4), -1.0, dtype=np.float32), grid)
    assert mass is None


def test_localisation_of_a_model_is_measured_on_held_out_fakes(train_tracks, tmp_path: Path) -> None:
    from deepfake_core.model.export import create_untrained_model

    model = create_untrained_model(tmp_path / "m.onnx", input_size=64, seed=0)
    result = measure_localisation(model, train_tracks, input_size=64, faces=12)
    assert result.faces == 12
    assert 0.0 < result.region_share < 1.0 and 0.0 <= result.mass_in_region <= 1.0
    assert 0.0 <= result.peak_in_region <= 1.0


def test_training_with_the_region_loss_moves_the_evidence_onto_the_manipulated_cells(
    train_tracks, tmp_path: Path
) -> None:
    from deepfake_training.learning.trainer import build_model, train_frames

    quiet = {"flip_probability": 0.0, "rotation_probability": 0.0, "jpeg_probability": 0.0,
             "colour_jitter_probability": 0.0, "brightness_probability": 0.0, "noise_probability": 0.0}  # fmt: skip
    config = TrainingConfig(input_size=96, batch_size=8, phase1_steps=15, warmup_steps=1, pgd_fraction=0.0,
                            swap_fraction=0.0, sbi_strength=3.0, checkpoint_every=100, **quiet)  # fmt: skip
    synthesizer = FaceSynthesizer(train_tracks, 96)
    pool = build_frame_pool(train_tracks, config, seed=0)
    probe = FrameDataset(pool, synthesizer, config, seed=99)
    fakes = [probe[i] for i in range(1, min(len(pool), 33), 2)]  # the fake of each pair
    images = torch.stack([image for image, *_ in fakes])
    regions = torch.stack([grid for *_, grid in fakes])

    def trained(weight: float) -> float:
        torch.manual_seed(0)
        model = build_model(config)
        run_config = config.with_overrides({"cam_region_weight": weight})
        train_frames(model, FrameDataset(pool, synthesizer, run_config, 0), run_config, tmp_path / str(weight),
                     resume=False)  # fmt: skip
        model.eval()
        with torch.inference_mode():
            return region_loss(model.frame_logits_and_cams(images)[1], regions).item()

    with_region, without = trained(1.0), trained(0.0)
    assert with_region < without - 0.05, (with_region, without)

"""Grad-CAM: heatmaps from the exported model's CAM output equal autograd Grad-CAM through the torch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from deepfake_core.contract import ModelMetadata
from deepfake_core.explain.gradcam import heatmap_from_cam, heatmaps_from_cams
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.model.export import export_onnx
from deepfake_core.model.gradcam_torch import gradcam_autograd
from deepfake_core.model.network import HybridDeepfakeDetector

from tests.core.model_helpers import face_clip, perturbed_model

SIZE = 112


@pytest.fixture(scope="module")
def model() -> HybridDeepfakeDetector:
    return perturbed_model(input_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def faces(media_dir: Path) -> np.ndarray:
    return face_clip(media_dir, SIZE, frames=4, batch=2)


def test_onnx_heatmaps_match_autograd_gradcam_on_every_frame(
    model: HybridDeepfakeDetector, faces: np.ndarray, tmp_path: Path
) -> None:
    path = export_onnx(model, tmp_path / "detector.onnx", ModelMetadata(input_size=SIZE, trained=True))
    cams = OnnxBackend(path).infer(faces).frame_cams
    reference = gradcam_autograd(model, faces)
    assert reference.shape == cams.shape == (2, 4, 4, 4)

    informative = 0
    for sequence in range(faces.shape[0]):
        for frame in range(faces.shape[1]):
            served = heatmap_from_cam(cams[sequence, frame], SIZE)
            expected = heatmap_from_cam(reference[sequence, frame], SIZE)
            if expected.max() == 0.0:  # no positive evidence: Grad-CAM is empty, and so must ours be
                assert served.max() == 0.0
                continue
            informative += 1
            assert np.corrcoef(served.ravel(), expected.ravel())[0, 1] >= 0.99, (sequence, frame)
    assert informative >= 6, "the test model should give non-empty heatmaps on most frames"


def test_autograd_gradcam_is_the_relu_of_the_cam_over_the_grid_area(
    model: HybridDeepfakeDetector, faces: np.ndarray
) -> None:
    with torch.no_grad():
        cams = model(torch.from_numpy(faces))["frame_cams"].numpy()
    area = cams.shape[-1] * cams.shape[-2]
    reference = gradcam_autograd(model, faces)
    np.testing.assert_allclose(reference, np.maximum(cams, 0.0) / area, rtol=1e-3, atol=1e-5)
    assert (cams < 0).any() and (cams > 0).any()  # both signs, so the ReLU is exercised
    assert not model.training


def test_heatmap_is_normalised_upsampled_and_peaks_where_the_cam_does() -> None:
    cam = np.full((4, 4), -1.0, dtype=np.float32)
    cam[1, 2], cam[3, 0] = 8.0, 2.0
    heatmap = heatmap_from_cam(cam, 64)
    assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
    # The grid's peak is 1; upsampled pixel centres fall between cell centres, so slightly less here.
    assert heatmap.min() == 0.0 and 0.9 < heatmap.max() <= 1.0
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    # Cell (1, 2) of a 4x4 grid covers rows 16..31 and columns 32..47 of the 64x64 map.
    assert 16 <= row < 32 and 32 <= column < 48
    assert heatmap[56, 8] == pytest.approx(0.25, abs=0.02)  # the 2.0 cell, relative to the 8.0 peak


def test_heatmap_without_positive_evidence_stays_zero() -> None:
    np.testing.assert_array_equal(heatmap_from_cam(-np.ones((7, 7), np.float32), 224), np.zeros((224, 224)))
    np.testing.assert_array_equal(heatmap_from_cam(np.full((2, 2), np.nan, np.float32), 8), np.zeros((8, 8)))


def test_heatmaps_for_a_track_keep_frame_order() -> None:
    cams = np.zeros((3, 2, 2), dtype=np.float32)
    cams[0, 0, 0], cams[1, 1, 1], cams[2, 0, 1] = 1.0, 5.0, 0.5
    heatmaps = heatmaps_from_cams(cams, 10)
    assert heatmaps.shape == (3, 10, 10)
    # Each map reaches 1 in the corner its only positive cell is in.
    assert [
        heatmap[row, column] for heatmap, (row, column) in zip(heatmaps, [(0, 0), (9, 9), (0, 9)], strict=True)
    ] == [
        1.0,
        1.0,
        1.0,
    ]
    assert heatmaps[0][9, 9] == heatmaps[1][0, 0] == heatmaps[2][9, 0] == 0.0
    assert heatmaps_from_cams(np.zeros((0, 2, 2), np.float32), 10).shape == (0, 10, 10)


def test_heatmap_rejects_a_batch_where_one_frame_is_expected() -> None:
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        heatmap_from_cam(np.zeros((2, 4, 4), np.float32), 32)

"""Exports: ONNX FP32/FP16/INT8 agree with torch, carry the metadata, and the workflow calibrates them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from deepfake_core.contract import ModelMetadata
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.model.export import read_metadata
from deepfake_training.config import TrainingConfig
from deepfake_training.data.face_cache import FaceCache
from deepfake_training.data.samples import to_tensor
from deepfake_training.learning.trainer import build_model
from deepfake_training.workflows.exports import export_all, parity, update_metadata

# Tolerances on P(fake): FP32 is the same arithmetic; FP16 rounds weights and activations; INT8 quantises
# every convolution, so it gets a looser bound (its AUC drift is measured separately on validation data).
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.15}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_cache: FaceCache):
    torch.manual_seed(0)
    model = build_model(TrainingConfig(input_size=64)).eval()
    # A few steps of training move batch-norm statistics off their defaults, as a trained model's are.
    model.train()
    faces = to_tensor(tiny_cache.load("local-franck").main_track().crops[:32])
    with torch.no_grad():
        model.frame_only(faces)
    model.eval()
    metadata = ModelMetadata(input_size=64, sequence_length=30, trained=True, fake_threshold=0.7, uncertain_low=0.4)
    clips = [tiny_cache.load("local-cap12_edit").main_track().crops[k : k + 4] for k in range(0, 16, 4)]
    directory = tmp_path_factory.mktemp("exports")
    return model, export_all(model, directory, metadata, clips), tiny_cache


def test_every_precision_matches_torch(exported) -> None:
    model, files, cache = exported
    crops = cache.load("local-cap13_edit2").main_track().crops[:6]
    faces = np.ascontiguousarray(to_tensor(crops).numpy().reshape(2, 3, 3, 64, 64))
    assert set(files) == {"fp32", "fp16", "int8"}
    for precision, item in files.items():
        differences = parity(model, item.path, faces)
        assert differences["frame_logits_probability"] < TOLERANCE[precision], (precision, differences)
        assert differences["sequence_logits_probability"] < TOLERANCE[precision], (precision, differences)
    assert parity(model, files["fp32"].path, faces)["frame_logits"] < 1e-3
    assert files["int8"].size_bytes < 0.6 * files["fp32"].size_bytes
    assert files["fp16"].size_bytes < 0.6 * files["fp32"].size_bytes


def test_exports_carry_the_calibrated_metadata_and_load_in_the_serving_backend(exported) -> None:
    _, files, _ = exported
    for precision, item in files.items():
        metadata = read_metadata(item.path)
        assert metadata.trained and metadata.input_size == 64
        assert (metadata.fake_threshold, metadata.uncertain_low) == (0.7, 0.4)
        assert metadata.extra["precision"] == precision
        backend = OnnxBackend(item.path)
        output = backend.infer(np.zeros((1, 2, 3, 64, 64), np.float32))
        assert output.frame_logits.shape == (1, 2, 2) and output.frame_cams.shape == (1, 2, 2, 2)


def test_update_metadata_rewrites_thresholds_in_every_file(exported, tmp_path: Path) -> None:
    _, files, _ = exported
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(files["fp16"].path.read_bytes())
    update_metadata([copy], extra={"note": "recalibrated"}, fake_threshold=0.81, version="7")
    metadata = read_metadata(copy)
    assert (metadata.fake_threshold, metadata.version, metadata.extra["note"]) == (0.81, "7", "recalibrated")
    assert metadata.extra["precision"] == "fp16"
    assert replace(metadata, fake_threshold=0.7, version="0", extra={}) == replace(
        read_metadata(files["fp16"].path), extra={}
    )

"""build_detector: the one assembly of backend and face analyser, and the checks every caller gets from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deepfake_core.assembly import build_detector, model_face_size
from deepfake_core.contract import InferenceOutput, ModelMetadata
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.sampling import parse_sampling
from deepfake_core.settings import CoreSettings


class RecordingBackend:
    """A backend that serves `metadata` and remembers being closed."""

    def __init__(self, input_size: int) -> None:
        self.metadata = ModelMetadata(input_size=input_size, trained=True)
        self.closed = False

    def infer(self, faces: np.ndarray) -> InferenceOutput:  # pragma: no cover - never called here
        raise AssertionError("no inference in assembly tests")

    def ready(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


def test_crops_take_the_models_input_size() -> None:
    models = build_detector(CoreSettings(), backend=RecordingBackend(112))
    assert models.face_size == 112 and models.metadata.input_size == 112
    assert model_face_size(CoreSettings(face_size=112), ModelMetadata(input_size=112)) == 112


def test_a_face_size_the_model_was_not_trained_at_is_refused_and_the_backend_closed() -> None:
    backend = RecordingBackend(112)
    with pytest.raises(DetectionError) as caught:
        build_detector(CoreSettings(face_size=224), backend=backend)
    assert caught.value.code is ErrorCode.MODEL_INVALID
    assert "DEEPFAKE_FACE_SIZE=224" in caught.value.message and "112" in caught.value.message
    assert backend.closed


def test_an_untrained_model_file_is_refused_unless_allowed(untrained_model: Path) -> None:
    with pytest.raises(DetectionError) as caught:
        build_detector(CoreSettings(model_path=untrained_model))
    assert caught.value.code is ErrorCode.UNTRAINED_MODEL
    models = build_detector(CoreSettings(model_path=untrained_model, allow_untrained_model=True, onnx_threads=1))
    assert models.face_size == models.metadata.input_size == 64
    models.close()
    assert not models.backend.ready()


def test_a_face_stage_without_a_model_needs_its_crop_size_and_has_no_backend() -> None:
    with pytest.raises(ValueError, match="face_size"):
        build_detector(CoreSettings(), with_model=False)
    with pytest.raises(ValueError, match="no backend"):
        build_detector(CoreSettings(), with_model=False, face_size=64, backend=RecordingBackend(64))
    with pytest.raises(ValueError, match="from the model"):
        build_detector(CoreSettings(), backend=RecordingBackend(64), face_size=64)
    faces = build_detector(CoreSettings(face_size=224), with_model=False, face_size=64)
    assert faces.face_size == 64  # the cache's size: no model to disagree with
    with pytest.raises(RuntimeError, match="without a model"):
        _ = faces.backend


def test_the_face_stage_finds_faces_at_its_crop_size(media_dir: Path) -> None:
    faces = build_detector(CoreSettings(), with_model=False, face_size=64, face_workers=1)
    found = faces.find_faces(media_dir / "astronaut.png", parse_sampling("uniform:1"))
    assert len(found.media.frames) == 1 and found.tracks
    assert all(obs.crop_rgb.shape == (64, 64, 3) for track in found.tracks for obs in track.observations)

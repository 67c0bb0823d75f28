"""The worker's models come from the core's build_detector: the worker refuses what the CLI refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.settings import CoreSettings
from deepfake_worker import inference
from deepfake_worker.settings import WorkerSettings

INPUT_SIZE = 64


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepfake_core.model.export import create_untrained_model

    return create_untrained_model(tmp_path_factory.mktemp("model") / "untrained64.onnx", input_size=INPUT_SIZE, seed=0)


def core(model: Path, **changes: object) -> CoreSettings:
    return CoreSettings(model_path=model, allow_untrained_model=True, onnx_threads=1, **changes)


def test_the_worker_refuses_crops_of_another_size_than_the_model_takes(small_model: Path) -> None:
    settings = WorkerSettings(inference_backend="onnxruntime", cpu_threads_per_process=1)
    with pytest.raises(DetectionError) as caught:
        inference.load_models(settings, core(small_model, face_size=2 * INPUT_SIZE))
    assert caught.value.code is ErrorCode.MODEL_INVALID
    assert f"DEEPFAKE_FACE_SIZE={2 * INPUT_SIZE}" in caught.value.message


def test_the_worker_refuses_an_untrained_model_unless_allowed(small_model: Path) -> None:
    settings = WorkerSettings(inference_backend="onnxruntime", cpu_threads_per_process=1)
    with pytest.raises(DetectionError) as caught:
        inference.load_models(settings, CoreSettings(model_path=small_model))
    assert caught.value.code is ErrorCode.UNTRAINED_MODEL


def test_the_worker_backend_is_instrumented_and_the_face_stage_matches_it(small_model: Path) -> None:
    settings = WorkerSettings(inference_backend="onnxruntime", cpu_threads_per_process=1)
    models = inference.load_models(settings, core(small_model))
    try:
        assert isinstance(models.backend, inference.InstrumentedBackend)
        assert models.backend.name == "onnxruntime" and models.backend.sha256
        assert models.face_size == models.metadata.input_size == INPUT_SIZE
    finally:
        models.close()

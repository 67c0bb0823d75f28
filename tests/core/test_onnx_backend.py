"""The in-process onnxruntime backend: contract checks at load time, model resolution, refusal of untrained models."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from deepfake_core.contract import OUTPUT_NAMES
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.inference.onnx_backend import OnnxBackend, load_backend
from deepfake_core.model.export import read_metadata
from deepfake_core.model_files import resolve_model_path
from deepfake_core.settings import CoreSettings
from onnx import TensorProto, helper


def identity_model(path: Path, input_name: str, output_names: tuple[str, ...]) -> Path:
    """A valid ONNX file that is not a detector: every output is a copy of the input."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], [name]) for name in output_names],
        "not_a_detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", "seq", 3, 64, 64])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in output_names],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_missing_file_says_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(DetectionError) as raised:
        OnnxBackend(tmp_path / "nope.onnx")
    assert raised.value.code is ErrorCode.MODEL_NOT_FOUND
    assert "make model" in raised.value.message


def test_a_file_that_is_not_onnx_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"definitely not a protobuf")
    with pytest.raises(DetectionError) as raised:
        OnnxBackend(path)
    assert raised.value.code is ErrorCode.MODEL_INVALID


def test_a_model_with_other_tensor_names_is_invalid(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "other.onnx", "images", ("logits",))
    with pytest.raises(DetectionError) as raised:
        OnnxBackend(path)
    assert raised.value.code is ErrorCode.MODEL_INVALID
    assert "'faces'" in raised.value.message and "logits" in raised.value.message


def test_a_model_missing_one_output_is_invalid(tmp_path: Path) -> None:
    path = identity_model(tmp_path / "partial.onnx", "faces", OUTPUT_NAMES[:3])
    with pytest.raises(DetectionError) as raised:
        OnnxBackend(path)
    assert raised.value.code is ErrorCode.MODEL_INVALID
    assert "attention" in raised.value.message


def test_untrained_model_is_refused_by_default(untrained_model: Path) -> None:
    with pytest.raises(DetectionError) as raised:
        load_backend(CoreSettings(model_path=untrained_model))
    assert raised.value.code is ErrorCode.UNTRAINED_MODEL
    assert "make model" in raised.value.message


def test_untrained_model_runs_when_allowed(untrained_model: Path) -> None:
    backend = load_backend(CoreSettings(model_path=untrained_model, allow_untrained_model=True, onnx_threads=1))
    size = backend.metadata.input_size
    assert backend.metadata == read_metadata(untrained_model)
    assert backend.sha256 == hashlib.sha256(untrained_model.read_bytes()).hexdigest()
    assert backend.ready()

    output = backend.infer(np.random.default_rng(0).random((2, 3, 3, size, size), dtype=np.float32))
    side = -(-size // 32)
    assert output.frame_logits.shape == (2, 3, 2)
    assert output.sequence_logits.shape == (2, 2)
    assert output.frame_cams.shape == output.attention.shape == (2, 3, side, side)
    assert np.isfinite(output.frame_logits).all()

    with pytest.raises(ValueError, match="shape"):
        backend.infer(np.zeros((1, 3, size, size), dtype=np.float32))
    backend.close()
    assert not backend.ready()
    with pytest.raises(DetectionError) as raised:
        backend.infer(np.zeros((1, 1, 3, size, size), dtype=np.float32))
    assert raised.value.code is ErrorCode.INFERENCE_FAILED


def test_concurrent_calls_give_the_same_results_as_sequential_ones(untrained_model: Path) -> None:
    backend = OnnxBackend(untrained_model, threads=1)
    size = backend.metadata.input_size
    inputs = [np.random.default_rng(seed).random((1, 2, 3, size, size), dtype=np.float32) for seed in range(4)]
    expected = [backend.infer(faces).frame_logits for faces in inputs]
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        results[index] = backend.infer(inputs[index]).frame_logits

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, logits in enumerate(expected):
        np.testing.assert_array_equal(results[index], logits)


def test_repository_resolution_picks_the_newest_numeric_version(tmp_path: Path, untrained_model: Path) -> None:
    model_dir = tmp_path / "repo" / "deepfake_detector"
    for version in ("1", "2", "10"):
        (model_dir / version).mkdir(parents=True)
        (model_dir / version / "model.onnx").symlink_to(untrained_model)
    (model_dir / "11").mkdir()  # a version folder without a model is skipped
    (model_dir / "latest").mkdir()  # not a version
    (model_dir / "latest" / "model.onnx").write_bytes(b"")
    settings = CoreSettings(model_repository=tmp_path / "repo", allow_untrained_model=True)

    assert resolve_model_path(settings) == model_dir / "10" / "model.onnx"
    assert load_backend(settings).path == model_dir / "10" / "model.onnx"
    explicit = CoreSettings(model_path=model_dir / "1" / "model.onnx", model_repository=tmp_path / "repo")
    assert resolve_model_path(explicit) == model_dir / "1" / "model.onnx"


def test_empty_repository_says_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(DetectionError) as raised:
        load_backend(CoreSettings(model_repository=tmp_path / "empty"))
    assert raised.value.code is ErrorCode.MODEL_NOT_FOUND
    assert "make model" in raised.value.message


def test_idle_threads_sleep_unless_spinning_is_asked_for(untrained_model: Path) -> None:
    """Busy-waiting pool threads starve the face stage and other workers on a shared 2-core machine."""
    key = "session.intra_op.allow_spinning"
    default = load_backend(CoreSettings(model_path=untrained_model, allow_untrained_model=True))
    spinning = load_backend(CoreSettings(model_path=untrained_model, allow_untrained_model=True, onnx_spinning=True))
    try:
        assert default._session.get_session_options().get_session_config_entry(key) == "0"
        assert spinning._session.get_session_options().get_session_config_entry(key) == "1"
        assert default.precision == "fp32", "an export without a precision tag is an FP32 export"
    finally:
        default.close()
        spinning.close()

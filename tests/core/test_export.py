"""ONNX export: contract tensors with dynamic batch and sequence axes, parity with torch, metadata."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from deepfake_core.contract import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from deepfake_core.model.export import create_untrained_model, export_onnx, read_metadata, write_metadata
from deepfake_core.model.network import HybridDeepfakeDetector
from onnx import numpy_helper

from tests.core.model_helpers import face_clip, perturbed_model

SIZE = 112
METADATA = ModelMetadata(
    version="3",
    input_size=SIZE,
    sequence_length=30,
    trained=True,
    fake_threshold=0.61,
    uncertain_low=0.4,
    cnn_weight=0.55,
    lstm_weight=0.45,
    extra={"training_run": "abc123"},
)


@pytest.fixture(scope="module")
def model() -> HybridDeepfakeDetector:
    return perturbed_model(input_size=SIZE, seed=1)


@pytest.fixture(scope="module")
def exported(model: HybridDeepfakeDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model.train()  # export must not depend on, nor leave, the caller's mode
    return export_onnx(model, tmp_path_factory.mktemp("export") / "detector.onnx", METADATA)


@pytest.fixture(scope="module")
def session(exported: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])


def test_export_leaves_the_model_in_eval_mode(model: HybridDeepfakeDetector, exported: Path) -> None:
    assert not any(module.training for module in model.modules())


def test_graph_has_the_contract_tensors_with_dynamic_batch_and_sequence(session: ort.InferenceSession) -> None:
    (faces,) = session.get_inputs()
    assert (faces.name, faces.type, faces.shape) == (INPUT_NAME, "tensor(float)", ["batch", "seq", 3, SIZE, SIZE])
    shapes = {output.name: output.shape for output in session.get_outputs()}
    assert shapes == {
        "frame_logits": ["batch", "seq", 2],
        "sequence_logits": ["batch", 2],
        "frame_cams": ["batch", "seq", 4, 4],
        "attention": ["batch", "seq", 4, 4],
    }


def test_file_is_self_contained_and_valid_at_opset_17(exported: Path) -> None:
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    assert max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    assert not any(onnx.external_data_helper.uses_external_data(tensor) for tensor in proto.graph.initializer)
    assert [path.name for path in exported.parent.iterdir()] == [exported.name]


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (2, 5)])
def test_onnxruntime_matches_torch_on_every_output(
    model: HybridDeepfakeDetector, session: ort.InferenceSession, media_dir: Path, batch: int, steps: int
) -> None:
    faces = face_clip(media_dir, SIZE, frames=steps, batch=batch)
    with torch.no_grad():
        expected = {name: tensor.numpy() for name, tensor in model(torch.from_numpy(faces)).items()}
    actual = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: faces}), strict=True))
    for name in OUTPUT_NAMES:
        assert actual[name].shape == expected[name].shape, name
        # 1e-4 absolute for outputs of order one; relative beyond that (CAMs reach the hundreds here, and
        # float32 sums over 2048 channels in a different order differ by a few parts per million).
        tolerance = 1e-4 * max(1.0, float(np.abs(expected[name]).max()))
        assert np.abs(actual[name] - expected[name]).max() <= tolerance, name
    # What users see, the fake probabilities, agree to 1e-4 absolute whatever the logits' scale.
    from deepfake_core.scoring import fake_probability

    for name in ("frame_logits", "sequence_logits"):
        assert np.abs(fake_probability(actual[name]) - fake_probability(expected[name])).max() <= 1e-4, name
    # The comparison means something only if the outputs are not all near zero.
    assert np.abs(expected["frame_logits"]).max() > 0.1
    assert np.abs(expected["frame_cams"]).max() > 0.1


def test_metadata_round_trips_and_rewrites_in_place(exported: Path, tmp_path: Path) -> None:
    assert read_metadata(exported) == METADATA
    copy = tmp_path / "copy.onnx"
    proto = onnx.load(str(exported))
    proto.metadata_props.add(key="producer_note", value="kept")
    onnx.save(proto, str(copy))

    calibrated = replace(METADATA, version="4", fake_threshold=0.7, extra={})
    write_metadata(copy, calibrated)
    assert read_metadata(copy) == calibrated
    props = {entry.key: entry.value for entry in onnx.load(str(copy), load_external_data=False).metadata_props}
    assert props["producer_note"] == "kept"
    assert "deepfake.training_run" not in props


def test_export_refuses_mismatched_input_size_and_old_opsets(model: HybridDeepfakeDetector, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input size"):
        export_onnx(model, tmp_path / "a.onnx", replace(METADATA, input_size=224))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "b.onnx", METADATA, opset=13)
    assert not list(tmp_path.iterdir())


def test_untrained_model_is_deterministic_and_says_so(untrained_model: Path, tmp_path: Path) -> None:
    metadata = read_metadata(untrained_model)
    assert metadata.trained is False
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    again = create_untrained_model(tmp_path / "again.onnx", input_size=metadata.input_size, seed=0)
    # The caller's random state is left alone.
    torch.testing.assert_close(torch.rand(3), expected_draw)

    reference_weights = onnx.load(str(untrained_model)).graph.initializer
    again_weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(str(again)).graph.initializer}
    assert len(reference_weights) == len(again_weights) > 50  # 53 convolutions (batch norms folded), LSTM, heads
    for tensor in reference_weights:
        assert np.array_equal(numpy_helper.to_array(tensor), again_weights[tensor.name]), tensor.name

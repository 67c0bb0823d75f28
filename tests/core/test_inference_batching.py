"""One model call for the crops of both windows: the same scores as one call per window, on a real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deepfake_core.contract import InferenceOutput, to_model_input
from deepfake_core.faces.analyzer import FaceAnalyzer
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.media.loader import resolve_sequence_length
from deepfake_core.pipeline import prepare_media, run_inference
from deepfake_core.scoring import split_windows
from deepfake_core.settings import CoreSettings


class RecordingBackend:
    """The real model, recording the shape of every batch it is given."""

    def __init__(self, inner: OnnxBackend) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, faces: np.ndarray) -> InferenceOutput:
        self.shapes.append(faces.shape)
        return self.inner.infer(faces)


@pytest.fixture(scope="module")
def backend(untrained_model: Path) -> OnnxBackend:
    backend = OnnxBackend(untrained_model)
    yield backend
    backend.close()


def test_both_windows_go_through_the_model_in_one_call_with_the_scores_of_one_call_each(
    media_dir: Path, backend: OnnxBackend
):
    settings = CoreSettings(allow_untrained_model=True)
    metadata = backend.metadata
    analyzer = FaceAnalyzer(settings, metadata.input_size)
    prepared = prepare_media(media_dir / "franck.mp4", settings, "windows:2", analyzer, metadata=metadata)
    length = resolve_sequence_length(settings, metadata)
    recording = RecordingBackend(backend)

    batched = run_inference(prepared, recording, length)

    (track,) = prepared.tracks
    assert recording.shapes == [(2, length, 3, metadata.input_size, metadata.input_size)]
    positions = list(range(len(track.observations)))
    windows = split_windows(positions, prepared.plan.groups, [o.frame_index for o in track.observations], length)
    assert len(windows) == 2
    (scores,) = batched.tracks
    for row, window in enumerate(windows):
        alone = backend.infer(to_model_input(np.stack([track.observations[p].crop_rgb for p in window]))[None])
        np.testing.assert_allclose(scores.frame_logits[window], alone.frame_logits[0], atol=1e-4)
        np.testing.assert_allclose(scores.frame_cams[window], alone.frame_cams[0], atol=1e-4)
        np.testing.assert_allclose(scores.sequence_logits[row], alone.sequence_logits[0], atol=1e-4)

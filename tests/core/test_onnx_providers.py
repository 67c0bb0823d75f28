"""The onnxruntime backend's execution providers: the CPU alone unless the caller names others (training's export
checks name CUDA first on a GPU machine); a requested provider this onnxruntime lacks falls back to the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from deepfake_core.inference.onnx_backend import OnnxBackend

from tests.core.conftest import PLUMBING_INPUT_SIZE


def _faces() -> np.ndarray:
    size = PLUMBING_INPUT_SIZE
    return np.random.default_rng(0).random((1, 2, 3, size, size), dtype=np.float32)


def test_the_backend_runs_on_the_cpu_alone_by_default(untrained_model: Path) -> None:
    backend = OnnxBackend(untrained_model)
    try:
        assert backend.providers == ["CPUExecutionProvider"]
    finally:
        backend.close()
    assert backend.providers == []  # a closed backend runs nowhere


def test_named_providers_are_used_and_a_missing_one_falls_back_to_the_cpu(untrained_model: Path) -> None:
    default = OnnxBackend(untrained_model)
    requested = OnnxBackend(untrained_model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    try:
        if "CUDAExecutionProvider" in ort.get_available_providers():
            assert requested.providers[0] == "CUDAExecutionProvider"
        else:
            assert requested.providers == ["CPUExecutionProvider"]  # onnxruntime without CUDA: the CPU, no error
            np.testing.assert_array_equal(requested.infer(_faces()).frame_logits, default.infer(_faces()).frame_logits)
    finally:
        default.close()
        requested.close()

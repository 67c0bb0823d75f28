"""Where tensors run: 'auto' is the GPU when there is one, and scoring (calibration, evaluation, retrain's gate)
follows the training device instead of always running on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deepfake_training.config import TrainingConfig
from deepfake_training.evaluation import scorer as evaluation
from deepfake_training.evaluation.scorer import TorchScorer
from deepfake_training.learning.runtime import export_check_providers, onnx_providers, resolve_device, select_device
from deepfake_training.learning.trainer import build_model


def test_auto_is_the_gpu_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == select_device(TrainingConfig())
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") == select_device(TrainingConfig())
    assert resolve_device("cpu") == torch.device("cpu"), "an explicit cpu stays on the cpu"


def test_the_torch_scorer_scores_on_the_resolved_device(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model(TrainingConfig(input_size=64, sequence_length=4, lstm_hidden=8))
    faces = np.random.default_rng(0).random((1, 4, 3, 64, 64), dtype=np.float32)
    frame_logits, sequence_logits = TorchScorer(model, "cpu")(faces)
    assert frame_logits.shape == (1, 4, 2) and sequence_logits.shape == (1, 2)
    # Where 'auto' resolves to, the model goes: the meta device stands in for a GPU on this CPU-only machine.
    monkeypatch.setattr(evaluation, "resolve_device", lambda device: torch.device("meta"))
    scorer = TorchScorer(model)
    assert scorer.device.type == "meta" and {p.device.type for p in model.parameters()} == {"meta"}


def test_export_checks_use_cuda_only_on_a_gpu_with_an_onnxruntime_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    cpu_build = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(gpu_build, "cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(gpu_build, torch.device("cuda", 1)) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(gpu_build, "cpu") == ["CPUExecutionProvider"]  # a CPU run checks on the CPU
    assert onnx_providers(cpu_build, "cuda") == ["CPUExecutionProvider"]  # onnxruntime without CUDA
    # This machine: the device 'auto' resolves to and the installed onnxruntime decide.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert export_check_providers() == ["CPUExecutionProvider"]

"""Fixtures for the core: a small untrained model for plumbing tests (never presented as a detector)."""

from __future__ import annotations

from pathlib import Path

import pytest

PLUMBING_INPUT_SIZE = 64


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepfake_core.model.export import create_untrained_model

    path = tmp_path_factory.mktemp("models") / "untrained64.onnx"
    return create_untrained_model(path, input_size=PLUMBING_INPUT_SIZE, seed=0)

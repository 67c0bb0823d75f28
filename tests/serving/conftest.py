"""Fixtures for serving tests: a small detector installed into a scratch model repository, and a real Triton.

The model is a perturbed (non-degenerate) untrained detector at input size 64: enough for plumbing and parity
checks, cheap on two cores. One tritonserver serves it for the whole session, started through deepfake_devstack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deepfake_core.contract import ModelMetadata

SERVING_INPUT_SIZE = 64
SERVING_SEQUENCE_LENGTH = 4


@pytest.fixture(scope="session")
def serving_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported detector whose outputs are of order one, so that parity checks can fail."""
    from deepfake_core.model.export import export_onnx

    from tests.core.model_helpers import perturbed_model

    model = perturbed_model(SERVING_INPUT_SIZE, seed=3)
    metadata = ModelMetadata(
        input_size=SERVING_INPUT_SIZE,
        sequence_length=SERVING_SEQUENCE_LENGTH,
        trained=False,
        fake_threshold=0.55,
        extra={"origin": "tests/serving, perturbed seed 3"},
    )
    return export_onnx(model, tmp_path_factory.mktemp("serving-model") / "detector64.onnx", metadata)


@pytest.fixture(scope="session")
def installed_repository(serving_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository root with the serving model installed as version 1 of every variant."""
    from deepfake_core.serving.model_repository import install_model

    root = tmp_path_factory.mktemp("model-repository")
    assert install_model(serving_model, root) == 1
    return root


@pytest.fixture(scope="session")
def triton_server(installed_repository: Path) -> Iterator[object]:
    """tritonserver (python backend) serving the cpu variant of `installed_repository`."""
    from deepfake_devstack.triton_server import TritonServer

    with TritonServer(installed_repository / "cpu") as server:
        yield server

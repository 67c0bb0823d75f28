"""`--init imagenet=PATH`: a torchvision-named resnext50_32x4d state dict (made here) loads into the backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deepfake_core.model.network import DetectorConfig, HybridDeepfakeDetector
from deepfake_training.cli import main
from deepfake_training.learning.checkpoints import InitWeightsError, load_imagenet_backbone, parse_init


def _imagenet_like_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """What `torch.save(torchvision.models.resnext50_32x4d().state_dict())` holds: the backbone's names + fc."""
    generator = torch.Generator().manual_seed(seed)
    names = HybridDeepfakeDetector(DetectorConfig(input_size=64)).backbone.state_dict()
    state = {
        name: (torch.randn(value.shape, generator=generator) if value.is_floating_point() else value + 3)
        for name, value in names.items()
    }
    return {**state, "fc.weight": torch.randn(1000, 2048, generator=generator), "fc.bias": torch.zeros(1000)}


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module_prefix"])
def test_imagenet_weights_load_into_the_backbone(tmp_path: Path, wrap: str) -> None:
    state = _imagenet_like_state()
    saved = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 90},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "resnext50_32x4d.pth"
    torch.save(saved, path)
    model = HybridDeepfakeDetector(DetectorConfig(input_size=64))
    head_before = model.frame_head.weight.clone()
    assert parse_init(f"imagenet={path}") == path
    loaded = load_imagenet_backbone(model, path)
    assert loaded == len(state) - 2  # every tensor but the ImageNet classifier
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert torch.equal(model.frame_head.weight, head_before)  # the heads stay freshly initialised


def test_wrong_weights_and_specs_are_refused_with_a_sentence(tmp_path: Path) -> None:
    state = _imagenet_like_state()
    del state["layer4.2.conv3.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(InitWeightsError, match="torchvision's names"):
        load_imagenet_backbone(HybridDeepfakeDetector(DetectorConfig(input_size=64)), path)
    with pytest.raises(InitWeightsError, match="imagenet=PATH"):
        parse_init(f"timm={path}")
    with pytest.raises(InitWeightsError, match="no file"):
        parse_init(f"imagenet={tmp_path / 'missing.pth'}")


def test_train_refuses_a_missing_init_file_before_touching_data(tmp_path: Path, capsys) -> None:
    code = main(["train", "--dataset", f"ffpp={tmp_path}", "--out", str(tmp_path / "run"), "--no-mlflow",
                 "--init", f"imagenet={tmp_path / 'none.pth'}"])  # fmt: skip
    assert code == 2 and "no file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

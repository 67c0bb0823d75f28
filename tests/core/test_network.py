"""The hybrid detector's architecture: size, ResNeXt structure, torchvision weight names, output contract."""

from __future__ import annotations

import pytest
import torch
from deepfake_core.contract import OUTPUT_NAMES
from deepfake_core.model.network import (
    FAKE_INDEX,
    DetectorConfig,
    HybridDeepfakeDetector,
    count_parameters,
    feature_map_size,
    load_torchvision_backbone,
)

from tests.core.model_helpers import perturbed_model


@pytest.fixture(scope="module")
def model() -> HybridDeepfakeDetector:
    return perturbed_model(input_size=112)


def torchvision_resnext50_32x4d_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of torchvision's resnext50_32x4d, written out from its definition."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    batch_norm("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1):
        width = planes * 2  # planes * (4 / 64) * 32 groups
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, inplanes, 1, 1)
            batch_norm(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width // 32, 3, 3)
            batch_norm(f"{prefix}.bn2", width)
            shapes[f"{prefix}.conv3.weight"] = (planes * 4, width, 1, 1)
            batch_norm(f"{prefix}.bn3", planes * 4)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                batch_norm(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def test_parameter_count_matches_resnext50_plus_bilstm(model: HybridDeepfakeDetector) -> None:
    total = count_parameters(model)
    assert 27_000_000 <= total <= 28_000_000
    # torchvision's resnext50_32x4d has 25,028,904 parameters, 2,049,000 of them in the ImageNet classifier.
    assert count_parameters(model.backbone) == 25_028_904 - 2_049_000
    # One bidirectional layer, 2048 -> 256 per direction: 2 * 4 * 256 * (2048 + 256 + 2).
    assert count_parameters(model.temporal) == 2 * 4 * 256 * (2048 + 256 + 2)


def test_every_bottleneck_has_a_32_group_3x3_convolution(model: HybridDeepfakeDetector) -> None:
    grouped = [
        module for module in model.backbone.modules() if isinstance(module, torch.nn.Conv2d) and module.groups > 1
    ]
    assert len(grouped) == 3 + 4 + 6 + 3
    assert {(conv.groups, conv.kernel_size) for conv in grouped} == {(32, (3, 3))}


def test_backbone_state_dict_has_torchvision_names_and_shapes(model: HybridDeepfakeDetector) -> None:
    expected = {
        name: shape for name, shape in torchvision_resnext50_32x4d_shapes().items() if not name.startswith("fc.")
    }
    actual = {name: tuple(tensor.shape) for name, tensor in model.backbone.state_dict().items()}
    assert actual == expected


def test_torchvision_state_dict_loads_strictly_without_its_classifier() -> None:
    generator = torch.Generator().manual_seed(1)
    state = {
        name: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
        for name, shape in torchvision_resnext50_32x4d_shapes().items()
    }
    model = HybridDeepfakeDetector(DetectorConfig(input_size=64))
    load_torchvision_backbone(model, state)
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["layer3.5.conv2.weight"], state["layer3.5.conv2.weight"])
    assert torch.equal(loaded["layer4.0.downsample.1.running_var"], state["layer4.0.downsample.1.running_var"])
    assert all(torch.equal(loaded[name], value) for name, value in state.items() if not name.startswith("fc."))

    del state["layer2.1.bn3.bias"]
    with pytest.raises(RuntimeError, match="layer2.1.bn3.bias"):
        load_torchvision_backbone(model, state)


@pytest.mark.parametrize(("batch", "steps", "size"), [(1, 1, 112), (2, 3, 112), (1, 2, 224)])
def test_outputs_have_the_contract_shapes(model: HybridDeepfakeDetector, batch: int, steps: int, size: int) -> None:
    network = model if size == 112 else HybridDeepfakeDetector(DetectorConfig(input_size=size)).eval()
    with torch.no_grad():
        outputs = network(torch.rand(batch, steps, 3, size, size))
    side = feature_map_size(size)
    assert tuple(outputs) == OUTPUT_NAMES
    assert outputs["frame_logits"].shape == (batch, steps, 2)
    assert outputs["sequence_logits"].shape == (batch, 2)
    assert outputs["frame_cams"].shape == (batch, steps, side, side)
    assert outputs["attention"].shape == (batch, steps, side, side)
    assert bool(((outputs["attention"] >= 0) & (outputs["attention"] <= 1)).all())


def test_feature_map_side_is_input_over_32_rounded_up() -> None:
    assert [feature_map_size(size) for size in (64, 112, 160, 224)] == [2, 4, 5, 7]


def test_fake_logit_is_the_spatial_mean_of_the_cam_plus_bias(model: HybridDeepfakeDetector) -> None:
    with torch.no_grad():
        outputs = model(torch.rand(2, 2, 3, 112, 112))
    expected = outputs["frame_cams"].mean(dim=(2, 3)) + model.frame_head.bias[FAKE_INDEX]
    torch.testing.assert_close(outputs["frame_logits"][..., FAKE_INDEX], expected, rtol=1e-4, atol=1e-5)


def test_sequences_in_a_batch_do_not_mix(model: HybridDeepfakeDetector) -> None:
    faces = torch.rand(2, 3, 3, 112, 112)
    with torch.no_grad():
        together = model(faces)
        alone = [model(faces[index : index + 1]) for index in range(2)]
    for name in OUTPUT_NAMES:
        torch.testing.assert_close(together[name], torch.cat([item[name] for item in alone]), rtol=1e-4, atol=1e-5)


def test_training_entry_points_agree_with_forward(model: HybridDeepfakeDetector) -> None:
    faces = torch.rand(1, 3, 3, 112, 112)
    with torch.no_grad():
        outputs = model(faces)
        features = model.forward_features(faces)
        frame_logits = model.frame_only(faces.flatten(0, 1))
        sequence_logits = model.sequence_from_features(features)
    assert features.shape == (1, 3, 2048)
    torch.testing.assert_close(frame_logits, outputs["frame_logits"].flatten(0, 1))
    torch.testing.assert_close(sequence_logits, outputs["sequence_logits"])


def test_dropout_acts_in_training_mode_only() -> None:
    torch.manual_seed(0)
    network = HybridDeepfakeDetector(DetectorConfig(input_size=64, dropout=0.5))
    features = torch.rand(2, 4, 2048)
    network.train()
    first, second = network.sequence_from_features(features), network.sequence_from_features(features)
    assert not torch.equal(first, second)
    network.eval()
    torch.testing.assert_close(network.sequence_from_features(features), network.sequence_from_features(features))


@pytest.mark.parametrize("size", [100, 48])
def test_config_refuses_sizes_the_backbone_cannot_tile(size: int) -> None:
    with pytest.raises(ValueError, match="input_size"):
        DetectorConfig(input_size=size)

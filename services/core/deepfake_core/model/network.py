"""The hybrid detector: ResNeXt-50 32x4d + spatial attention per frame, a BiLSTM over the frames.

Plain PyTorch (no torchvision): the backbone's parameter names match torchvision's `resnext50_32x4d`,
so ImageNet weights from torchvision or timm load with `strict=True` where a user has them.

Per frame (N = B * T frames of side S, last-stage map h = w = ceil(S / 32)):
  F = backbone(normalise(frame))                     [N, 2048, h, w]
  a = sigmoid(conv7x7([mean_c F, max_c F]))          [N, 1, h, w]   spatial attention, in [0, 1]
  A = F * a                                          attended features
  p = mean_hw A                                      [N, 2048]      pooled features
  frame_logits = W_frame · dropout(p) + b_frame      [N, 2]         classes (real, fake)
  frame_cams   = sum_c W_frame[fake, c] * A[c]       [N, h, w]      CAM of the fake logit, before ReLU
Per sequence:
  BiLSTM(p over T) -> mean over time of the [T, 512] outputs -> dropout -> Linear(512, 2) = sequence_logits

Because the frame head is linear on the spatial mean of A, `mean_hw(frame_cams) + b_frame[fake]` is the fake
frame logit exactly, and Grad-CAM on A equals this CAM (see `deepfake_core.explain.gradcam`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfake_core.contract import OUTPUT_NAMES

REAL_INDEX = 0
FAKE_INDEX = 1
NUM_CLASSES = 2
FEATURE_CHANNELS = 2048
BACKBONE_STRIDE = 32

# ImageNet statistics: the backbone expects inputs normalised like its (optional) pretrained weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ResNeXt-50 32x4d, as torchvision builds it.
RESNEXT50_LAYERS = (3, 4, 6, 3)
RESNEXT50_GROUPS = 32
RESNEXT50_WIDTH_PER_GROUP = 4


@dataclass
class DetectorConfig:
    """Shape of the detector. `input_size` is the aligned face side the model is trained and served at."""

    input_size: int = 224
    lstm_hidden: int = 256
    dropout: float = 0.3
    sequence_length: int = 30

    def __post_init__(self) -> None:
        # A multiple of 16 keeps every stage but the last exact; the last map is ceil(S / 32) (112 -> 4).
        if self.input_size < 64 or self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 and at least 64, got {self.input_size}")
        if self.lstm_hidden < 1:
            raise ValueError(f"lstm_hidden must be positive, got {self.lstm_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.sequence_length < 1:
            raise ValueError(f"sequence_length must be positive, got {self.sequence_length}")

    @property
    def feature_map_size(self) -> int:
        return feature_map_size(self.input_size)


def feature_map_size(input_size: int) -> int:
    """Side of the last-stage feature map (and of `frame_cams`/`attention`) for a face of `input_size`."""
    return -(-input_size // BACKBONE_STRIDE)


class Bottleneck(nn.Module):
    """torchvision's ResNeXt bottleneck (stride on the 3x3 grouped conv), with its attribute names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = int(planes * (RESNEXT50_WIDTH_PER_GROUP / 64.0)) * RESNEXT50_GROUPS
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, kernel_size=3, stride=stride, padding=1, groups=RESNEXT50_GROUPS, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXtBackbone(nn.Module):
    """ResNeXt-50 32x4d without its classifier: normalised RGB in, last-stage features [N, 2048, h, w] out."""

    def __init__(self) -> None:
        super().__init__()
        self._inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, RESNEXT50_LAYERS[0])
        self.layer2 = self._make_layer(128, RESNEXT50_LAYERS[1], stride=2)
        self.layer3 = self._make_layer(256, RESNEXT50_LAYERS[2], stride=2)
        self.layer4 = self._make_layer(512, RESNEXT50_LAYERS[3], stride=2)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation, so training from scratch behaves like the reference model.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: a 7x7 conv over the channel mean and max gives one weight per location."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (attended features F * a, attention a [N, 1, h, w] in [0, 1])."""
        descriptor = torch.cat(
            [features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)],
            dim=1,
        )
        attention = torch.sigmoid(self.conv(descriptor))
        return features * attention, attention


@dataclass
class FrameEncoding:
    """What the CNN branch computes for N frames; `attended` is the map Grad-CAM and the CAMs are taken on."""

    attended: Tensor  # [N, 2048, h, w]
    attention: Tensor  # [N, 1, h, w]
    pooled: Tensor  # [N, 2048]


class HybridDeepfakeDetector(nn.Module):
    """ResNeXt-50 + spatial attention frame classifier, and a BiLSTM sequence classifier on its pooled features."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DetectorConfig()
        # Constants, not weights: kept out of the state dict so checkpoints hold only learned tensors.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = ResNeXtBackbone()
        self.spatial_attention = SpatialAttention()
        self.dropout = nn.Dropout(self.config.dropout)
        self.frame_head = nn.Linear(FEATURE_CHANNELS, NUM_CLASSES)
        self.temporal = nn.LSTM(
            input_size=FEATURE_CHANNELS,
            hidden_size=self.config.lstm_hidden,
            num_layers=1,
            batch_first=True,
            bidirectional=True,
        )
        self.sequence_head = nn.Linear(2 * self.config.lstm_hidden, NUM_CLASSES)

    def encode_frames(self, frames: Tensor) -> FrameEncoding:
        """`frames`: float [N, 3, S, S], RGB in [0, 1]."""
        features = self.backbone((frames - self.pixel_mean) / self.pixel_std)
        attended, attention = self.spatial_attention(features)
        return FrameEncoding(attended=attended, attention=attention, pooled=attended.mean(dim=(2, 3)))

    def frame_only(self, frames: Tensor) -> Tensor:
        """Frame logits [N, 2] for [N, 3, S, S] frames: the CNN branch alone (training phase 1)."""
        return self.frame_head(self.dropout(self.encode_frames(frames).pooled))

    def frame_logits_and_cams(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frame logits [N, 2] and the fake CAMs [N, h, w] for [N, 3, S, S] frames (training with region targets)."""
        encoding = self.encode_frames(frames)
        return self.frame_head(self.dropout(encoding.pooled)), self._fake_cams(encoding)

    def _fake_cams(self, encoding: FrameEncoding) -> Tensor:
        """sum_c W_frame[fake, c] * A[c]: the fake logit's CAM, [N, h, w], before ReLU."""
        fake_weight = self.frame_head.weight[FAKE_INDEX : FAKE_INDEX + 1, :, None, None]
        return F.conv2d(encoding.attended, fake_weight).squeeze(1)

    def forward_features(self, faces: Tensor) -> Tensor:
        """Pooled per-frame features [B, T, 2048] for faces [B, T, 3, S, S] (to cache for training phase 2)."""
        batch, steps = faces.shape[0], faces.shape[1]
        return self.encode_frames(faces.flatten(0, 1)).pooled.unflatten(0, (batch, steps))

    def sequence_from_features(self, features: Tensor) -> Tensor:
        """Sequence logits [B, 2] from pooled features [B, T, 2048]: the BiLSTM branch alone.

        The BiLSTM outputs are averaged over time: every frame counts equally, whatever the clip length.
        """
        # An explicit zero state sized from the input: the ONNX tracer would otherwise bake the example batch in.
        # Multiplying by zero keeps the batch size symbolic; new_zeros and zeros_like are folded into constants.
        state = (features[:, 0, :1] * 0.0).expand(-1, self.config.lstm_hidden)
        state = torch.stack([state, state])  # [directions, B, hidden]
        outputs, _ = self.temporal(features, (state, state))
        return self.sequence_head(self.dropout(outputs.mean(dim=1)))

    def forward(self, faces: Tensor) -> dict[str, Tensor]:
        """`faces`: float [B, T, 3, S, S], RGB in [0, 1]. Returns the four tensors of the inference contract."""
        batch, steps = faces.shape[0], faces.shape[1]
        encoding = self.encode_frames(faces.flatten(0, 1))
        frame_logits = self.frame_head(self.dropout(encoding.pooled))
        frame_cams = self._fake_cams(encoding)
        outputs = {
            "frame_logits": frame_logits.unflatten(0, (batch, steps)),
            "sequence_logits": self.sequence_from_features(encoding.pooled.unflatten(0, (batch, steps))),
            "frame_cams": frame_cams.unflatten(0, (batch, steps)),
            "attention": encoding.attention.squeeze(1).unflatten(0, (batch, steps)),
        }
        return {name: outputs[name] for name in OUTPUT_NAMES}


class ContractOutputs(nn.Module):
    """The detector with its outputs as a tuple in `OUTPUT_NAMES` order: the ONNX exporter names outputs by position."""

    def __init__(self, model: HybridDeepfakeDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, faces: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(faces)
        return tuple(outputs[name] for name in OUTPUT_NAMES)


def load_torchvision_backbone(model: HybridDeepfakeDetector, state_dict: Mapping[str, Tensor]) -> None:
    """Load ImageNet weights saved by torchvision's or timm's `resnext50_32x4d` into `model.backbone`.

    The classifier (`fc.*`) is dropped; everything else must match exactly (strict), so a wrong
    architecture fails loudly instead of silently leaving layers random.
    """
    backbone_state = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    model.backbone.load_state_dict(backbone_state, strict=True)


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())

"""The inference contract: aligned face crops in; per-frame, per-sequence scores and CAMs out.

Every backend (onnxruntime in-process, Triton over gRPC) implements `InferenceBackend`, and every
exported model has exactly these input and output tensors and these metadata keys.

Tensors (B = batch of sequences, T = frames per sequence, S = input size (a multiple of 16, >= 64),
h = w = ceil(S / 32)):
  input  `faces`            float32 [B, T, 3, S, S]  RGB in [0, 1]; the model normalises internally
  output `frame_logits`     float32 [B, T, 2]        CNN branch, classes (real, fake)
  output `sequence_logits`  float32 [B, 2]           BiLSTM branch over the T frames
  output `frame_cams`       float32 [B, T, h, w]     class activation map of the 'fake' logit over the
                                                     attended last-stage features, before ReLU; equal to
                                                     Grad-CAM for this head (see explain/gradcam.py)
  output `attention`        float32 [B, T, h, w]     the spatial attention weights, in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from deepfake_core.media.sampling import DEFAULT_SAMPLING

INPUT_NAME = "faces"
OUTPUT_NAMES = ("frame_logits", "sequence_logits", "frame_cams", "attention")

# ONNX metadata_props keys written by export and read by every backend.
META_PREFIX = "deepfake."


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about itself; thresholds come from calibration at export time."""

    name: str = "deepfake_detector"
    version: str = "0"
    input_size: int = 224
    sequence_length: int = 30
    trained: bool = False
    fake_threshold: float = 0.5
    uncertain_low: float = 0.35
    cnn_weight: float = 0.6
    lstm_weight: float = 0.4
    # How serving samples a video by default: the windows the BiLSTM was trained on (see media/sampling.py).
    sampling: str = DEFAULT_SAMPLING
    # Frames per second of the frames inside one training window; 0 means consecutive decoded frames.
    sequence_fps: float = 0.0
    # Thresholds calibrated on photos apart from videos (a photo has no BiLSTM score, so its fused
    # score is distributed differently); None means photos use the video thresholds above.
    image_fake_threshold: float | None = None
    image_uncertain_low: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """Every field as a string property; an optional threshold that is None is left out."""
        props = {
            "name": self.name,
            "version": self.version,
            "input_size": str(self.input_size),
            "sequence_length": str(self.sequence_length),
            "trained": "true" if self.trained else "false",
            "fake_threshold": repr(self.fake_threshold),
            "uncertain_low": repr(self.uncertain_low),
            "cnn_weight": repr(self.cnn_weight),
            "lstm_weight": repr(self.lstm_weight),
            "sampling": self.sampling,
            "sequence_fps": repr(self.sequence_fps),
            **_optional_float_props(
                image_fake_threshold=self.image_fake_threshold, image_uncertain_low=self.image_uncertain_low
            ),
            **self.extra,
        }
        return {META_PREFIX + key: value for key, value in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        own = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        known = {own_field.name for own_field in fields(cls)} - {"extra"}
        defaults = cls()
        return cls(
            name=own.get("name", defaults.name),
            version=own.get("version", defaults.version),
            input_size=int(own.get("input_size", defaults.input_size)),
            sequence_length=int(own.get("sequence_length", defaults.sequence_length)),
            trained=own.get("trained", "false").lower() == "true",
            fake_threshold=float(own.get("fake_threshold", defaults.fake_threshold)),
            uncertain_low=float(own.get("uncertain_low", defaults.uncertain_low)),
            cnn_weight=float(own.get("cnn_weight", defaults.cnn_weight)),
            lstm_weight=float(own.get("lstm_weight", defaults.lstm_weight)),
            sampling=own.get("sampling", defaults.sampling),
            sequence_fps=float(own.get("sequence_fps", defaults.sequence_fps)),
            image_fake_threshold=_optional_float(own.get("image_fake_threshold")),
            image_uncertain_low=_optional_float(own.get("image_uncertain_low")),
            extra={k: v for k, v in own.items() if k not in known},
        )


def _optional_float_props(**values: float | None) -> dict[str, str]:
    """Properties of the values that are set: an absent key, not "None", is how a file says 'not calibrated'."""
    return {key: repr(value) for key, value in values.items() if value is not None}


def _optional_float(value: str | None) -> float | None:
    """An optional property back to a float; absent (or empty, as some tools write it) means None."""
    return float(value) if value else None


@dataclass(frozen=True)
class InferenceOutput:
    frame_logits: np.ndarray
    sequence_logits: np.ndarray
    frame_cams: np.ndarray
    attention: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> InferenceOutput:
        return cls(**{name: np.asarray(arrays[name], dtype=np.float32) for name in OUTPUT_NAMES})


class InferenceBackend(Protocol):
    """Runs the exported model. Implementations must be safe to call from one thread at a time."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def infer(self, faces: np.ndarray) -> InferenceOutput:
        """`faces`: float32 [B, T, 3, S, S], RGB in [0, 1]."""
        ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...

"""The contract every other part of the core sits on: the model's tensors, its metadata, the backend protocol.

The exported network, every inference backend (onnxruntime in-process, Triton over gRPC), the serving
configs and the training code agree on what is written here and nothing else. This module imports nothing
from the rest of the core, so that the layers above (media, faces, inference, serving, the pipeline) only
ever point down at it.

Tensors (B = batch of sequences, T = frames per sequence, S = input size (a multiple of 16, >= 64),
h = w = ceil(S / 32)):
  input  `faces`            float32 [B, T, 3, S, S]  RGB in [0, 1] (`to_model_input`); the model normalises
                                                     internally
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

INPUT_NAME = "faces"
OUTPUT_NAMES = ("frame_logits", "sequence_logits", "frame_cams", "attention")

# ONNX metadata_props keys written by export and read by every backend; Triton configs carry the same keys
# as `parameters`, so a client without the ONNX file reads the same metadata.
META_PREFIX = "deepfake."
# Triton config parameter with the served ONNX file's digest, so that remote results name the exact model.
MODEL_SHA256_PARAMETER = "model_sha256"
# The file name of an ONNX model inside a model repository version folder (<repository>/<model>/<N>/model.onnx).
MODEL_FILE_NAME = "model.onnx"

# How a model that does not say otherwise is served: two windows of the length the BiLSTM was trained on
# (the grammar of sampling specs is media/sampling.py's).
DEFAULT_SAMPLING = "windows:2"


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """Aligned RGB uint8 crops [..., S, S, 3] -> float32 [..., 3, S, S] in [0, 1]: the model's input convention.

    The one place where crops become the `faces` tensor, for serving, training, evaluation and exports alike,
    so that a change of convention (another scale, a mean to subtract) is made once. Any leading axes are
    kept: one crop, a clip [T, ...] or a batch of clips [B, T, ...].
    """
    channels_first = np.moveaxis(np.asarray(crops), -1, -3)
    return np.ascontiguousarray(channels_first, dtype=np.float32) / np.float32(255.0)


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
        """`faces`: float32 [B, T, 3, S, S], RGB in [0, 1] (`to_model_input` of the crops)."""
        ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...

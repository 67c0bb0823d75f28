"""Inference backends: one interface, implemented in-process (onnxruntime) and by the worker (Triton)."""

from deepfake_core.inference.backend import (
    INPUT_NAME,
    OUTPUT_NAMES,
    InferenceBackend,
    InferenceOutput,
    ModelMetadata,
)

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "InferenceBackend", "InferenceOutput", "ModelMetadata"]

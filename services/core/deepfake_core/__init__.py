"""Deepfake detection core: one pipeline from a media file to a verdict.

The CLI, the Celery workers and the training code all call into this package; nothing here
depends on a server. The base install (contract, result, errors, sampling, settings) needs numpy and
pydantic only; detection needs the `detect` extra (onnxruntime, OpenCV, PyAV, dlib); torch is needed to
train or export.
"""

from deepfake_core.errors import DetectionError, ErrorCode

__all__ = ["DetectionError", "ErrorCode"]
__version__ = "0.1.0"

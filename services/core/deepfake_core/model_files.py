"""Where the model file is (the configured path, else the newest version in the model repository) and its digest.

Light on purpose (no onnxruntime): the gateway's readiness check and tools that only locate or fingerprint a
model import this without the inference stack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deepfake_core.contract import MODEL_FILE_NAME
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.settings import CoreSettings

GET_A_MODEL = "Run `make model` to train and export one, or set DEEPFAKE_MODEL_PATH to an ONNX file."


def resolve_model_path(settings: CoreSettings) -> Path:
    """`settings.model_path` if set, else `<model_repository>/<model_name>/<newest numeric version>/model.onnx`."""
    if settings.model_path is not None:
        return Path(settings.model_path)
    model_dir = Path(settings.model_repository) / settings.model_name
    versions = sorted(
        (int(child.name), child / MODEL_FILE_NAME)
        for child in (model_dir.iterdir() if model_dir.is_dir() else ())
        if child.name.isdigit() and (child / MODEL_FILE_NAME).is_file()
    )
    if not versions:
        raise DetectionError(
            ErrorCode.MODEL_NOT_FOUND, f"No {model_dir}/<version>/{MODEL_FILE_NAME} found. {GET_A_MODEL}"
        )
    return versions[-1][1]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks: results and served configs name the exact model file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""Typed errors with stable codes: what went wrong, in a sentence a person can act on.

Clients (the gateway, the CLI, webhook consumers) switch on `code`; the message is for people.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_MEDIA = "unsupported_media"
    CORRUPT_MEDIA = "corrupt_media"
    FILE_TOO_LARGE = "file_too_large"
    IMAGE_TOO_LARGE = "image_too_large"
    VIDEO_TOO_LONG = "video_too_long"
    TOO_MANY_FRAMES = "too_many_frames"
    NO_DECODABLE_FRAME = "no_decodable_frame"
    INVALID_SAMPLING = "invalid_sampling"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_INVALID = "model_invalid"
    UNTRAINED_MODEL = "untrained_model"
    INFERENCE_FAILED = "inference_failed"


class DetectionError(Exception):
    """A failure the caller can explain to a user; `code` is stable, `message` is prose."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}

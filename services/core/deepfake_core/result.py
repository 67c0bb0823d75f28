"""The one result document for images and videos, shared by the CLI, the API and webhooks.

Its JSON schema (`DetectionResult.model_json_schema()`) is published as the contract for clients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

SCHEMA_VERSION = "1.0"


class Verdict(StrEnum):
    REAL = "real"
    FAKE = "fake"
    UNCERTAIN = "uncertain"
    NO_FACE = "no_face"


class MediaType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class Box(BaseModel):
    """A face box in original-frame pixels."""

    x: float
    y: float
    width: float
    height: float


class TrackFrame(BaseModel):
    frame_index: int
    timestamp_s: float
    box: Box
    detection_score: float = Field(ge=0.0, le=1.0)
    score: float = Field(ge=0.0, le=1.0, description="P(fake) of this face by the CNN branch.")


class Heatmap(BaseModel):
    frame_index: int
    kind: str = Field(description="'face' (overlay on the aligned face) or 'frame' (on the original frame).")
    ref: str = Field(description="Where the PNG is: a file path, an object key or a presigned URL.")
    score: float


class TrackResult(BaseModel):
    track_id: int
    frames: list[TrackFrame]
    frame_score: float = Field(description="Mean per-frame CNN P(fake) over the track.")
    sequence_score: float | None = Field(
        description="Mean BiLSTM P(fake) over the track's sequences of the model's full sequence_length; null for "
        "images and for tracks without such a sequence (then score = frame_score)."
    )
    score: float = Field(description="Fused score: cnn_weight * frame_score + lstm_weight * sequence_score.")
    verdict: Verdict
    heatmaps: list[Heatmap] = Field(default_factory=list)


class Thresholds(BaseModel):
    fake: float = Field(description="score >= fake means 'fake'.")
    uncertain_low: float = Field(description="uncertain_low <= score < fake means 'uncertain'; below it, 'real'.")
    cnn_weight: float
    lstm_weight: float


class ModelInfo(BaseModel):
    name: str
    version: str
    input_size: int
    sequence_length: int
    trained: bool
    sha256: str | None = None


class MediaInfo(BaseModel):
    type: MediaType
    format: str = Field(description="Container or image format, e.g. 'mp4/h264' or 'jpeg'.")
    size_bytes: int
    sha256: str
    width: int
    height: int
    duration_s: float | None = None
    fps: float | None = None
    total_frames: int | None = None
    frames_sampled: int


class DetectionResult(BaseModel):
    schema_version: str = SCHEMA_VERSION
    verdict: Verdict
    score: float | None = Field(description="Score of the most suspicious track; null when no face was found.")
    confidence: float | None = Field(
        description="Distance of the score from the decision boundary of the verdict, scaled to [0, 1]."
    )
    decision_rule: str = Field(description="How the verdict follows from the tracks, in words.")
    thresholds: Thresholds
    model: ModelInfo
    media: MediaInfo
    sampling: str = Field(
        description="The frame sampling used: 'uniform:N', 'fps:R' or 'windows:K', windows with the spacing of "
        "their frames when the model was trained on spaced frames, e.g. 'windows:2@8fps'."
    )
    tracks: list[TrackResult]
    timings_ms: dict[str, float] = Field(description="Wall time per pipeline stage, milliseconds.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

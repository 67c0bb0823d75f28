"""The job record, its state machine and the webhook delivery log: one schema for the gateway and the workers.

These are internal records; what leaves the platform (the API's job document, webhook events) is built from
them in `deepfake_jobs.views`.

A job moves queued -> processing -> succeeded | failed | canceled; terminal states are final (only erasure
removes them). `ALLOWED_TRANSITIONS` is the state machine that `JobStore.update` enforces.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

MAX_METADATA_BYTES = 16 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

# Which status may follow which. A terminal job never changes again (a late worker cannot undo a cancel).
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, *TERMINAL_STATUSES}),
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING, *TERMINAL_STATUSES}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class Stage(StrEnum):
    """Pipeline stages, in order; each one is a Celery task that persists its output."""

    FETCH = "fetch"  # media into object storage, sha256, result-cache lookup
    PREPROCESS = "preprocess"  # decode, sample, detect and align faces -> jobs/{id}/prepared.bin
    INFERENCE = "inference"  # the model over the face sequences -> jobs/{id}/inference.bin
    EXPLAIN = "explain"  # scoring, Grad-CAM heatmaps, result document, audit record
    NOTIFY = "notify"  # webhook event (after the job is terminal; not shown as the job's stage)


# Progress (percent) reached when each stage starts; a stage reports finer progress inside its span.
STAGE_PROGRESS_START: dict[Stage, int] = {Stage.FETCH: 0, Stage.PREPROCESS: 10, Stage.INFERENCE: 60, Stage.EXPLAIN: 85}


class MediaSourceKind(StrEnum):
    UPLOAD = "upload"  # streamed through the gateway into object storage
    URL = "url"  # fetched by the fetch stage with the SSRF rules
    PRESIGNED = "presigned"  # the client PUT it to a presigned URL of object storage


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    @property
    def celery_priority(self) -> int:
        """Redis transport order: 0 is consumed first (priority steps 0, 3, 6, 9)."""
        return {Priority.HIGH: 0, Priority.NORMAL: 3, Priority.LOW: 6}[self]


MAX_FILENAME_CHARS = 255
# Control (Cc), format (Cf: U+202E RIGHT-TO-LEFT OVERRIDE and the other bidi controls, zero-width characters) and
# line/paragraph separators: invisible or reordering characters that make "evil\u202egpj.exe" display as a photo.
_UNSAFE_FILENAME_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_filename(name: str | None) -> str | None:
    """A client's filename made safe to store and echo: its last path part, without control and bidi characters,
    at most 255 characters (the extension kept). The platform sanitises rather than refuses: the name is only a
    label, and browsers send whatever the user's file was called. None when nothing is left."""
    if name is None:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch) not in _UNSAFE_FILENAME_CATEGORIES).strip()
    if len(kept) > MAX_FILENAME_CHARS:
        stem, dot, suffix = kept.rpartition(".")
        suffix = dot + suffix if dot and 0 < len(suffix) <= 16 else ""
        kept = kept[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return kept or None


class MediaRef(BaseModel):
    source: MediaSourceKind
    object_key: str | None = Field(default=None, description="Where the media is in object storage, once it is.")
    url: str | None = Field(default=None, description="The URL fetched (source=url); never a presigned URL.")
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    sha256: str | None = None

    @field_validator("filename", mode="before")
    @classmethod
    def _safe_filename(cls, value: object) -> object:
        return clean_filename(value) if isinstance(value, str) else value


class JobOptions(BaseModel):
    callback_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque; echoed back in the job and webhooks.")
    priority: Priority = Priority.NORMAL
    sampling: str | None = Field(
        default=None,
        description="A sampling spec such as 'windows:2', 'uniform:32' or 'fps:1'; unset = the model's own "
        "(the windows it was trained on).",
    )
    explain: bool = Field(default=True, description="Produce Grad-CAM heatmaps.")

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialise to at most {MAX_METADATA_BYTES} bytes of JSON.")
        return value


class JobError(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'corrupt_media', 'url_not_allowed'.")
    message: str


WAITING_FOR_MODEL = "waiting_for_model"  # Job.progress_stage while the inference stage waits out a model outage


class StageRun(BaseModel):
    """One execution of a stage; `reused` means its output already existed (a retry resumed)."""

    stage: Stage
    started_at: datetime
    duration_ms: float | None = None
    reused: bool = False


class Job(BaseModel):
    id: str = Field(default_factory=new_job_id)
    tenant_id: str
    status: JobStatus = JobStatus.QUEUED
    stage: Stage | None = None
    progress: int = Field(default=0, ge=0, le=100)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    media: MediaRef
    options: JobOptions = Field(default_factory=JobOptions)
    error: JobError | None = None
    result_key: str | None = Field(default=None, description="Object key of the DetectionResult JSON.")
    verdict: str | None = Field(default=None, description="The result's verdict, copied for listings and metrics.")
    model_version: str | None = None
    cache_hit: bool = False
    attempts: int = Field(default=0, ge=0, description="How many times the current stage has been started.")
    stage_runs: list[StageRun] = Field(default_factory=list)
    progress_stage: str | None = Field(
        default=None, description="What the stage is doing when it is not plain work: `waiting_for_model`."
    )
    waiting_since: datetime | None = Field(
        default=None, description="When the model server first failed for this job (the wait's budget starts)."
    )

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def stage_timings_ms(self) -> dict[str, float]:
        """Total wall time per stage over all its runs (retries included)."""
        timings: dict[str, float] = {}
        for run in self.stage_runs:
            if run.duration_ms is not None:
                timings[run.stage.value] = timings.get(run.stage.value, 0.0) + run.duration_ms
        return timings


class EventType(StrEnum):
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRYING = "retrying"  # failed; another attempt is scheduled at next_retry_at
    FAILED = "failed"  # failed; the retry period is over (or a manual redelivery failed)
    REFUSED = "refused"  # the callback URL is not allowed (SSRF rules); never retried


class DeliveryAttempt(BaseModel):
    event_id: str
    attempt: int = Field(ge=1)
    url: str
    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)
    next_retry_at: datetime | None = None
    duration_ms: float | None = None

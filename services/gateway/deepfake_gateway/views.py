"""The public documents of the API: what a client sees of a job, a job list, an upload and a delivery log.

A stored `deepfake_jobs.models.Job` holds internal fields (the tenant, object keys, retry counters); the
views here are what leaves the service, in REST JSON and (through deepfake_gateway.proto) in gRPC. Pure
pydantic, so that any component may build the same document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deepfake_jobs.models import (
    DeliveryAttempt,
    Job,
    JobError,
    JobOptions,
    JobStatus,
    MediaSourceKind,
    Priority,
    Stage,
)
from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/v1"


def job_path(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}"


class MediaView(BaseModel):
    source: MediaSourceKind
    url: str | None = Field(default=None, description="The URL fetched (source=url).")
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = Field(default=None, description="Known once the media is stored.")


class JobLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self", serialization_alias="self")
    result: str
    deliveries: str


class JobView(BaseModel):
    """A job as clients see it (REST `GET /v1/jobs/{id}`, gRPC `Job`)."""

    id: str
    status: JobStatus
    stage: Stage | None = Field(default=None, description="Pipeline stage while processing.")
    progress: int = Field(ge=0, le=100, description="Percent done.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    media: MediaView
    options: JobOptions
    error: JobError | None = Field(default=None, description="Why the job failed (status=failed).")
    verdict: str | None = Field(default=None, description="The result's verdict (status=succeeded).")
    model_version: str | None = None
    cache_hit: bool = Field(description="The result was reused from identical media; no inference ran.")
    stage_timings_ms: dict[str, float] = Field(default_factory=dict)
    links: JobLinks

    def document(self) -> dict[str, Any]:
        """The JSON document (as json.loads would give it)."""
        return self.model_dump(mode="json", by_alias=True)


def public_job(job: Job) -> JobView:
    path = job_path(job.id)
    return JobView(
        id=job.id,
        status=job.status,
        stage=job.stage if not job.terminal else None,
        progress=job.progress,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        media=MediaView(
            source=job.media.source,
            url=job.media.url,
            filename=job.media.filename,
            content_type=job.media.content_type,
            size_bytes=job.media.size_bytes,
            sha256=job.media.sha256,
        ),
        options=job.options,
        error=job.error,
        verdict=job.verdict,
        model_version=job.model_version,
        cache_hit=job.cache_hit,
        stage_timings_ms=job.stage_timings_ms(),
        links=JobLinks(self_=path, result=f"{path}/result", deliveries=f"{path}/deliveries"),
    )


class JobPageView(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class SubmitJson(BaseModel):
    """`POST /v1/jobs` with a JSON body: media from a URL or from a finished presigned upload."""

    model_config = ConfigDict(extra="forbid")

    media_url: str | None = Field(default=None, max_length=4096, description="A public http(s) URL of the media.")
    upload_id: str | None = Field(default=None, max_length=64, description="From POST /v1/uploads, after the PUT.")
    callback_url: str | None = Field(default=None, max_length=4096)
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    sampling: str | None = Field(default=None, max_length=64)
    explain: bool = True


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str | None = Field(default=None, max_length=255)
    content_type: str = Field(
        default="application/octet-stream", max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$", description="A MIME type."
    )


class UploadView(BaseModel):
    upload_id: str
    upload_url: str = Field(description="PUT the media here, with the Content-Type given in `headers`.")
    method: str = "PUT"
    headers: dict[str, str]
    expires_at: datetime
    max_bytes: int


class DeliveryView(BaseModel):
    event_id: str
    attempt: int
    url: str
    outcome: str
    status_code: int | None
    error: str | None
    at: datetime
    next_retry_at: datetime | None
    duration_ms: float | None

    @classmethod
    def of(cls, attempt: DeliveryAttempt) -> DeliveryView:
        return cls.model_validate(attempt.model_dump())


class DeliveryLogView(BaseModel):
    job_id: str
    event_id: str | None = Field(description="The job's webhook event; null until the job finished.")
    event_type: str | None
    deliveries: list[DeliveryView]


class RedeliveryView(BaseModel):
    job_id: str
    event_id: str
    status: str = Field(description="'queued': a new delivery attempt will be made shortly.")


class WebhookSecretView(BaseModel):
    secret: str = Field(description="Verify the Deepfake-Signature header of your webhooks with this.")
    signature_header: str
    scheme: str

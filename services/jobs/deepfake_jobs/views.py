"""The public documents of a job: what leaves the platform, in REST JSON, gRPC and webhook bodies alike.

A stored `deepfake_jobs.models.Job` holds internal fields (the tenant, object keys, retry counters, stage
runs); `public_job()` is the one place that decides what a client sees of it. The gateway answers
`GET /v1/jobs/{id}` with it and converts it to the gRPC `Job`; the workers send it as the `job` of every
webhook event, so a receiver gets exactly the document the API serves. Pure pydantic: no FastAPI, no model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deepfake_jobs.models import (
    EventType,
    Job,
    JobError,
    JobOptions,
    JobStatus,
    MediaSourceKind,
    Stage,
    new_event_id,
    utcnow,
)

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
    """A job as clients see it (REST `GET /v1/jobs/{id}`, gRPC `Job`, the `job` of a webhook event)."""

    id: str
    status: JobStatus
    stage: Stage | None = Field(default=None, description="Pipeline stage while processing.")
    progress: int = Field(ge=0, le=100, description="Percent done.")
    progress_stage: str | None = Field(
        default=None,
        description="`waiting_for_model` while the model server is unreachable: the job waits (up to the "
        "configured DEEPFAKE_MODEL_WAIT_S), then fails with `service_unavailable`.",
    )
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
    """The client's view of a stored job: no tenant id, object keys, attempt counters or stage runs."""
    path = job_path(job.id)
    return JobView(
        id=job.id,
        status=job.status,
        stage=job.stage if not job.terminal else None,
        progress=job.progress,
        progress_stage=job.progress_stage if not job.terminal else None,
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


class WebhookEvent(BaseModel):
    """One finished job announced to its callback URL; the body is `model_dump_json(by_alias=True)`.

    `job` is the public document (`public_job`), never the stored record: the body leaves the platform.
    """

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(default_factory=new_event_id)
    type: EventType
    created_at: datetime = Field(default_factory=utcnow)
    job: JobView

    def body(self) -> bytes:
        """The exact bytes that are signed and sent (and stored: `JobStore.save_event`)."""
        return self.model_dump_json(by_alias=True).encode()

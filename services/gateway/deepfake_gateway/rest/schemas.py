"""The REST API's own documents: a job page, the submit body, an upload and the webhook delivery log.

The job document itself (`JobView`, `public_job()`) is `deepfake_jobs.views`, because the workers send the very
same document in webhook bodies; routes import it from there. Pure pydantic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deepfake_jobs.models import MAX_FILENAME_CHARS, DeliveryAttempt, Priority, clean_filename
from deepfake_jobs.views import JobView
from pydantic import BaseModel, ConfigDict, Field, field_validator


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

    filename: str | None = Field(
        default=None,
        max_length=MAX_FILENAME_CHARS,
        description="A label only: control and bidi characters are removed, longer names are cut to 255 "
        "characters (the extension kept).",
    )
    content_type: str = Field(
        default="application/octet-stream", max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$", description="A MIME type."
    )

    @field_validator("filename", mode="before")
    @classmethod
    def _safe_filename(cls, value: object) -> object:
        return clean_filename(value) if isinstance(value, str) else value


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

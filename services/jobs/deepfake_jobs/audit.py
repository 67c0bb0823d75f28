"""Append-only audit records: one JSON object per finished job, kept in object storage, never overwritten.

A record says who asked (tenant), about what (media sha256, never the media), which model answered, what it
said and how long each stage took. Retention of jobs does not erase audit records.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from deepfake_jobs.models import Job, new_event_id, utcnow
from deepfake_jobs.storage import ObjectExists, ObjectStore, audit_key


class AuditRecord(BaseModel):
    id: str = Field(default_factory=new_event_id)
    job_id: str
    tenant_id: str
    status: str
    error_code: str | None
    media_source: str
    media_sha256: str | None
    media_size_bytes: int | None
    media_type: str | None
    model_version: str | None
    verdict: str | None
    score: float | None
    cache_hit: bool
    created_at: datetime
    finished_at: datetime
    stage_timings_ms: dict[str, float]
    recorded_at: datetime = Field(default_factory=utcnow)


def audit_record(job: Job, *, media_type: str | None = None, score: float | None = None) -> AuditRecord:
    return AuditRecord(
        job_id=job.id,
        tenant_id=job.tenant_id,
        status=job.status.value,
        error_code=job.error.code if job.error else None,
        media_source=job.media.source.value,
        media_sha256=job.media.sha256,
        media_size_bytes=job.media.size_bytes,
        media_type=media_type,
        model_version=job.model_version,
        verdict=job.verdict,
        score=score,
        cache_hit=job.cache_hit,
        created_at=job.created_at,
        finished_at=job.finished_at or utcnow(),
        stage_timings_ms={stage: round(ms, 2) for stage, ms in job.stage_timings_ms().items()},
    )


def write_audit_record(
    objects: ObjectStore, job: Job, *, media_type: str | None = None, score: float | None = None
) -> str | None:
    """Store the record of a finished job at audit/{yyyy}/{mm}/{dd}/{job}.json; None if one exists already.

    The key is unique per job and a job finishes once, so a second write (a retried stage) is skipped, never
    an overwrite.
    """
    if not job.terminal:
        raise ValueError(f"job {job.id} is {job.status.value}; only finished jobs are audited")
    record = audit_record(job, media_type=media_type, score=score)
    key = audit_key(record.finished_at, job.id)
    try:
        objects.put_new(key, record.model_dump_json().encode())
    except ObjectExists:
        return None
    return key

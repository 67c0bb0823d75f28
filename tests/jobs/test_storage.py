"""Object storage over real HTTP (S3 API): streamed uploads with limits, presigned URLs, append-only audit,
erasure of a job and retention."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta

import httpx
import pytest
from deepfake_jobs.audit import AuditRecord, write_audit_record
from deepfake_jobs.models import Job, JobStatus, MediaRef, MediaSourceKind, Stage, StageRun, utcnow
from deepfake_jobs.retention import erase_expired, erase_job
from deepfake_jobs.storage import (
    PART_SIZE,
    ObjectExists,
    ObjectTooLarge,
    audit_key,
    job_record_key,
    prepared_key,
    result_key,
    upload_key,
)


class TrickleStream(io.RawIOBase):
    """A stream of unknown length (like an HTTP upload body), read in small pieces."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(self._piece, size) if size and size > 0 else self._piece)


def test_a_stream_of_unknown_length_is_stored_in_parts_with_its_hash(object_store, tenant_id):
    data = os.urandom(PART_SIZE + 1_500_000)  # two multipart parts
    stored = object_store.put_stream(f"uploads/{tenant_id}/big/media", TrickleStream(data))
    assert stored.size_bytes == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert object_store.get_bytes(stored.key) == data
    assert object_store.stat(stored.key).size_bytes == len(data)


def test_a_stream_past_the_limit_is_refused_and_nothing_is_kept(object_store, tenant_id):
    key = f"uploads/{tenant_id}/too-big/media"
    with pytest.raises(ObjectTooLarge) as caught:
        object_store.put_stream(key, TrickleStream(os.urandom(300_000)), max_bytes=200_000)
    assert caught.value.code == "media_too_large"
    assert not object_store.exists(key)


def test_presigned_urls_upload_and_download_without_credentials(object_store, tenant_id):
    key = f"uploads/{tenant_id}/presigned/media"
    payload = os.urandom(10_000)
    put = httpx.put(
        object_store.presigned_put(key, timedelta(minutes=5)),
        content=payload,
        headers={"Content-Type": "video/mp4"},
    )
    assert put.status_code == 200
    assert object_store.get_bytes(key) == payload
    get = httpx.get(object_store.presigned_get(key, timedelta(minutes=5)))
    assert get.status_code == 200 and get.content == payload


def test_delete_prefix_removes_only_that_folder(object_store, tenant_id):
    for name in ("a", "b", "c/d"):
        object_store.put_bytes(f"scratch/{tenant_id}/one/{name}", b"x")
    object_store.put_bytes(f"scratch/{tenant_id}/one-sibling", b"keep")
    assert object_store.delete_prefix(f"scratch/{tenant_id}/one/") == 3
    assert list(object_store.list_keys(f"scratch/{tenant_id}/")) == [f"scratch/{tenant_id}/one-sibling"]
    with pytest.raises(ValueError):
        object_store.delete_prefix(f"scratch/{tenant_id}")  # not a folder: refused


def finished_job(tenant: str, **fields: object) -> Job:
    now = utcnow()
    return Job(
        tenant_id=tenant,
        status=JobStatus.SUCCEEDED,
        media=MediaRef(source=MediaSourceKind.UPLOAD, sha256="cd" * 32, size_bytes=123),
        verdict="real",
        model_version="7",
        finished_at=now,
        stage_runs=[StageRun(stage=Stage.PREPROCESS, started_at=now, duration_ms=12.5)],
        **fields,
    )


def test_audit_records_are_append_only(object_store, tenant_id):
    job = finished_job(tenant_id)
    key = write_audit_record(object_store, job, media_type="video", score=0.2)
    assert key == audit_key(job.finished_at, job.id)
    record = AuditRecord.model_validate_json(object_store.get_bytes(key))
    assert (record.tenant_id, record.media_sha256, record.model_version, record.verdict) == (
        tenant_id,
        "cd" * 32,
        "7",
        "real",
    )
    assert record.stage_timings_ms == {"preprocess": 12.5} and record.score == 0.2
    changed = job.model_copy(update={"verdict": "fake"})
    assert write_audit_record(object_store, changed) is None  # a second write never overwrites
    assert AuditRecord.model_validate_json(object_store.get_bytes(key)).verdict == "real"
    with pytest.raises(ObjectExists):
        object_store.put_new(key, b"{}")
    with pytest.raises(ValueError):
        write_audit_record(object_store, job.model_copy(update={"status": JobStatus.PROCESSING}))


def _stored_job(job_store, object_store, tenant: str, age_days: float) -> Job:  # noqa: ANN001
    job = job_store.create(finished_job(tenant, created_at=utcnow() - timedelta(days=age_days)))
    for key in (
        upload_key(tenant, job.id),
        prepared_key(job.id),
        result_key(job.id),
        f"results/{job.id}/heatmaps/a.png",
    ):
        object_store.put_bytes(key, b"data")
    object_store.put_json(job_record_key(job.id), job.model_dump_json())
    return job


def test_erasing_a_job_deletes_its_objects_and_records_but_not_its_audit(job_store, object_store, tenant_id):
    job = _stored_job(job_store, object_store, tenant_id, age_days=0)
    audit = write_audit_record(object_store, job)
    assert erase_job(job_store, object_store, job.id) == 5
    assert job_store.get(job.id) is None, "nothing left to recover from either"
    assert not any(object_store.list_keys(f"results/{job.id}/")) and not any(object_store.list_keys(f"jobs/{job.id}/"))
    assert object_store.exists(audit)


def test_retention_erases_jobs_past_the_retention_period_only(job_store, object_store, tenant_id):
    old = _stored_job(job_store, object_store, tenant_id, age_days=31)
    recent = _stored_job(job_store, object_store, tenant_id, age_days=29)
    report = erase_expired(job_store, object_store, retention_days=30)
    assert report.jobs_erased >= 1
    assert job_store.get(old.id) is None and not object_store.exists(upload_key(tenant_id, old.id))
    assert job_store.get(recent.id) is not None and object_store.exists(upload_key(tenant_id, recent.id))
    assert [j.id for j in job_store.list(tenant_id).jobs] == [recent.id]


def test_the_beat_retention_task_runs_in_the_worker(job_store, object_store, celery_worker, tenant_id):
    import time

    from deepfake_jobs.dispatch import run_retention

    old = _stored_job(job_store, object_store, tenant_id, age_days=45)
    run_retention()
    deadline = time.monotonic() + 60
    while job_store.get(old.id) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_store.get(old.id) is None
    assert not object_store.exists(result_key(old.id))

"""Erasure: one job on request (the gateway's DELETE), and every job past `retention_days` (a periodic task).

Erasing a job deletes its media, stage outputs, result and heatmaps, its mirrored record and its Redis state.
Audit records stay: they hold no media, only its hash, and are kept under their own policy.

Retention reads Redis's creation index first, then scans object storage itself: after Redis lost its data the
index no longer names every job, and an upload nobody submitted has no job at all. Anything under `uploads/`,
`jobs/`, `results/` or `inflight/` last written before the cutoff is erased with its job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from deepfake_jobs.models import utcnow
from deepfake_jobs.storage import (
    INFLIGHT_PREFIX,
    JOBS_PREFIX,
    RESULTS_PREFIX,
    UPLOADS_PREFIX,
    ObjectStore,
    inflight_key,
    job_prefix,
    result_prefix,
    upload_prefix,
)
from deepfake_jobs.store import JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionReport:
    cutoff: datetime
    jobs_erased: int
    objects_deleted: int


def erase_job(store: JobStore, objects: ObjectStore, job_id: str) -> int:
    """Delete everything stored for the job; returns the number of objects deleted (0 if unknown)."""
    job = store.get(job_id)
    store.mark_erased(job_id)  # first: a worker's late write of the job's record must not outlive the erase
    deleted = 0
    if job is not None:
        deleted += objects.delete_prefix(upload_prefix(job.tenant_id, job.id))
    deleted += objects.delete_prefix(result_prefix(job_id))
    if objects.exists(inflight_key(job_id)):
        objects.delete(inflight_key(job_id))
        deleted += 1
    deleted += objects.delete_prefix(job_prefix(job_id))  # the mirrored job.json last: recover() needs it
    store.erase(job_id)
    return deleted


def erase_expired(
    store: JobStore, objects: ObjectStore, retention_days: int, now: datetime | None = None, batch: int = 500
) -> RetentionReport:
    """Erase every job created more than `retention_days` ago (unfinished ones too: they are stuck)."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    jobs = objects_deleted = 0
    while True:
        expired = store.created_before(cutoff, limit=batch)
        if not expired:
            break
        for job_id in expired:
            objects_deleted += erase_job(store, objects, job_id)
            jobs += 1
    unindexed_jobs, unindexed_objects = erase_unindexed(store, objects, cutoff)
    jobs += unindexed_jobs
    objects_deleted += unindexed_objects
    if jobs:
        log.info("retention erased %d jobs (%d objects) created before %s", jobs, objects_deleted, cutoff)
    return RetentionReport(cutoff=cutoff, jobs_erased=jobs, objects_deleted=objects_deleted)


def _job_id_of(key: str) -> tuple[str, str | None] | None:
    """(job id, tenant id when the key names it) of an object retention may erase, else None."""
    parts = key.split("/")
    if key.startswith(UPLOADS_PREFIX) and len(parts) >= 4:
        return parts[2], parts[1]
    if key.startswith((JOBS_PREFIX, RESULTS_PREFIX)) and len(parts) >= 3:
        return parts[1], None
    if key.startswith(INFLIGHT_PREFIX) and key.endswith(".json"):
        return key.removeprefix(INFLIGHT_PREFIX).removesuffix(".json"), None
    return None


def erase_unindexed(store: JobStore, objects: ObjectStore, cutoff: datetime) -> tuple[int, int]:
    """Erase the jobs of objects last written before `cutoff` that the Redis pass did not reach; returns
    (jobs, objects deleted). An upload with no job record is deleted by its own prefix."""
    found: dict[str, str | None] = {}
    for prefix in (JOBS_PREFIX, RESULTS_PREFIX, INFLIGHT_PREFIX, UPLOADS_PREFIX):
        for key in objects.list_modified_before(prefix, cutoff):
            named = _job_id_of(key)
            if named is not None:
                job_id, tenant_id = named
                found[job_id] = found.get(job_id) or tenant_id
    jobs = deleted = 0
    for job_id, tenant_id in found.items():
        if tenant_id is not None:  # the upload goes even when no record names its tenant any more
            deleted += objects.delete_prefix(upload_prefix(tenant_id, job_id))
        deleted += erase_job(store, objects, job_id)
        jobs += 1
    return jobs, deleted

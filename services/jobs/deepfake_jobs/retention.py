"""Erasure: one job on request (the gateway's DELETE), and every job past `retention_days` (a periodic task).

Erasing a job deletes its media, stage outputs, result and heatmaps, its mirrored record and its Redis state.
Audit records stay: they hold no media, only its hash, and are kept under their own policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from deepfake_jobs.models import utcnow
from deepfake_jobs.storage import ObjectStore, inflight_key, job_prefix, result_prefix, upload_prefix
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
    if jobs:
        log.info("retention erased %d jobs (%d objects) created before %s", jobs, objects_deleted, cutoff)
    return RetentionReport(cutoff=cutoff, jobs_erased=jobs, objects_deleted=objects_deleted)

"""Job records: creation, reads (rebuilt from object storage after a Redis loss), and the state machine.

Redis is the fast path; object storage is the source of truth for finished jobs: every terminal transition
also writes `jobs/{id}/job.json`, and `recover()` (called by `get()` on a miss) rebuilds the record from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from deepfake_jobs.models import ALLOWED_TRANSITIONS, Job, JobStatus, utcnow
from deepfake_jobs.storage import ObjectStore, inflight_key, job_record_key
from deepfake_jobs.store import keys
from deepfake_jobs.store.errors import InvalidTransition, JobExists, JobNotFound
from deepfake_jobs.store.indexes import JobIndexes

log = logging.getLogger(__name__)

WEBHOOK_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})  # the finished jobs that send one


def owes_webhook(job: Job) -> bool:
    """Whether the job, once in its status, has a webhook to deliver."""
    return job.status in WEBHOOK_STATUSES and bool(job.options.callback_url)


class JobRecords:
    """The Job JSON per id and the index entries that move with it, changed atomically (optimistic locking)."""

    def __init__(self, redis_client: redis.Redis, objects: ObjectStore | None, indexes: JobIndexes) -> None:
        self.redis = redis_client
        self.objects = objects
        self.indexes = indexes

    def insert(self, job: Job) -> None:
        """Store a new job's record and index entries in Redis; `JobExists` if the id is taken."""
        with self.redis.pipeline() as pipe:
            _add_record(pipe, job)
            if not job.terminal:
                pipe.zadd(keys.ACTIVE_INDEX, {job.id: job.updated_at.timestamp()})
            created, *_ = pipe.execute()
        if not created:
            raise JobExists(job.id)

    def write_inflight(self, job: Job) -> None:
        """Write an unfinished job's record to object storage (`inflight/{id}.json`), for `recover`."""
        if self.objects is not None and not job.terminal:
            self.objects.put_json(inflight_key(job.id), job.model_dump_json())

    def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        """The job, or None; with `tenant_id`, another tenant's job is None (no existence leak)."""
        raw = self.redis.get(keys.job_key(job_id))
        job = Job.model_validate_json(raw) if raw is not None else self.recover(job_id)
        if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
            return None
        return job

    def require(self, job_id: str, tenant_id: str | None = None) -> Job:
        job = self.get(job_id, tenant_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def recover(self, job_id: str) -> Job | None:
        """Rebuild a job's Redis record after Redis lost data: a finished job from its mirrored
        `jobs/{id}/job.json`, an unfinished one from `inflight/{id}.json` (as it was when created; the
        stalled-job sweep then re-drives it, reusing the stage outputs already stored)."""
        if self.objects is None or not job_id or "/" in job_id or self.indexes.was_erased(job_id):
            return None
        unsettled = self.objects.exists(inflight_key(job_id))
        key = job_record_key(job_id) if self.objects.exists(job_record_key(job_id)) else None
        key = key or (inflight_key(job_id) if unsettled else None)
        if key is None:
            return None
        job = Job.model_validate_json(self.objects.get_bytes(key))
        with self.redis.pipeline() as pipe:
            _add_record(pipe, job)
            if not job.terminal:
                pipe.zadd(keys.ACTIVE_INDEX, {job.id: job.updated_at.timestamp()}, nx=True)
            elif unsettled and owes_webhook(job):  # finished, its webhook not yet settled
                pipe.zadd(keys.WEBHOOKS_OWED, {job.id: job.updated_at.timestamp()}, nx=True)
            pipe.execute()
        log.warning("job %s recovered from object storage", job_id)
        return job

    def modify(self, job_id: str, compute: Callable[[Job], dict[str, Any]]) -> Job:
        """Apply changes computed from the current record (e.g. appending to a list) atomically;
        `InvalidTransition` if the status may not change that way. A terminal job refuses every change, so a
        late worker never overwrites a canceled job.

        `compute` may run more than once (optimistic locking retries on a concurrent write).
        """
        key = keys.job_key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        pipe.unwatch()
                        if self.recover(job_id) is None:
                            raise JobNotFound(job_id)
                        continue
                    current = Job.model_validate_json(raw)
                    updated = apply_changes(current, compute(current))
                    pipe.multi()
                    pipe.set(key, updated.model_dump_json())
                    if updated.status != current.status:
                        member = keys.index_member(current)
                        pipe.zrem(keys.tenant_index(current.tenant_id, current.status), member)
                        pipe.zadd(keys.tenant_index(current.tenant_id, updated.status), {member: 0})
                    if updated.terminal:
                        pipe.zrem(keys.ACTIVE_INDEX, job_id)
                        if owes_webhook(updated):
                            pipe.zadd(keys.WEBHOOKS_OWED, {job_id: updated.updated_at.timestamp()})
                    else:
                        pipe.zadd(keys.ACTIVE_INDEX, {job_id: updated.updated_at.timestamp()})
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        if updated.terminal and not current.terminal:
            self.mirror(updated)
        return updated

    def mirror(self, job: Job) -> None:
        """Write the job record to object storage (`jobs/{id}/job.json`); logged, not raised, if that fails."""
        if self.objects is None:
            return
        try:
            self.objects.put_json(job_record_key(job.id), job.model_dump_json())
            if self.indexes.was_erased(job.id):  # erased while we wrote: leave nothing of it behind
                self.objects.delete(job_record_key(job.id))
                return
            if not owes_webhook(job):  # else it stays until the webhook settles (`record_delivery`)
                self.objects.delete(inflight_key(job.id))  # after the final record exists, never before
        except Exception:  # Redis holds the record; the mirror is retried on the next terminal write
            log.exception("could not mirror job %s to object storage", job.id)


def _add_record(pipe: redis.client.Pipeline, job: Job) -> None:
    """Queue the record (unless one exists: its `set` answers whether it was added) and its listing and
    creation index entries."""
    member = keys.index_member(job)
    pipe.set(keys.job_key(job.id), job.model_dump_json(), nx=True)
    pipe.zadd(keys.tenant_index(job.tenant_id), {member: 0})
    pipe.zadd(keys.tenant_index(job.tenant_id, job.status), {member: 0})
    pipe.zadd(keys.CREATED_INDEX, {job.id: job.created_at.timestamp()})


def apply_changes(current: Job, changes: dict[str, Any]) -> Job:
    """The state machine: the job with `changes` applied and its timestamps set; `InvalidTransition` if the
    status may not go there (or the job is finished)."""
    target = JobStatus(changes["status"]) if "status" in changes else None
    if current.terminal or (target is not None and target not in ALLOWED_TRANSITIONS[current.status]):
        raise InvalidTransition(current, target)
    fields = current.model_dump()
    fields.update(changes)
    now = utcnow()
    fields["updated_at"] = now
    status = target or current.status
    if status == JobStatus.PROCESSING and fields.get("started_at") is None:
        fields["started_at"] = now
    if status.terminal and fields.get("finished_at") is None:
        fields["finished_at"] = now
    return Job.model_validate(fields)

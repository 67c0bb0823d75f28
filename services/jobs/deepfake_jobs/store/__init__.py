"""The job store: all job state in Redis, mirrored to object storage, behind one `JobStore` facade.

Its parts, one module each: `keys` (the key layout), `records` (records and the state machine), `indexes`
(listings, stall and retention indexes, erase marks), `data_loss`, `idempotency`, `result_cache`, `deliveries`
(webhook events and the delivery log), `errors`. The facade only composes them, and does what spans several:
creating a job (undone if its in-flight record cannot be written) and erasing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import redis

from deepfake_jobs import queues
from deepfake_jobs.models import DeliveryAttempt, Job, JobStatus
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.storage import ObjectStore
from deepfake_jobs.store import keys
from deepfake_jobs.store.data_loss import DataLossScan
from deepfake_jobs.store.deliveries import WebhookDeliveries
from deepfake_jobs.store.idempotency import IdempotencyKeys
from deepfake_jobs.store.indexes import JobIndexes, JobPage
from deepfake_jobs.store.records import JobRecords
from deepfake_jobs.store.result_cache import ResultCache
from deepfake_jobs.views import WebhookEvent


class JobStore:
    """All job state in Redis. Thread-safe (redis-py pools connections); synchronous by design."""

    def __init__(
        self,
        redis_client: redis.Redis,
        objects: ObjectStore | None = None,
        settings: PlatformSettings | None = None,
    ) -> None:
        self.redis = redis_client
        self.objects = objects
        self.settings = settings or PlatformSettings()
        self.indexes = JobIndexes(redis_client, self.settings)
        self.records = JobRecords(redis_client, objects, self.indexes)
        self.data_loss = DataLossScan(redis_client, objects)
        self.idempotency = IdempotencyKeys(redis_client, self.settings)
        self.result_cache = ResultCache(redis_client, self.settings)
        self.webhooks = WebhookDeliveries(redis_client, objects)

    @classmethod
    def from_settings(cls, settings: PlatformSettings, objects: ObjectStore | None = None) -> JobStore:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        return cls(client, objects if objects is not None else ObjectStore(settings), settings)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # --- operations that span the parts ---

    def create(self, job: Job) -> Job:
        """Store a new job; `JobExists` if the id is taken.

        An unfinished job's record is also written to object storage (`inflight/{id}.json`), so that a Redis
        that loses its data loses no job: `recover` and the stalled-job sweep rebuild it from there. If that
        write fails, the job is removed from Redis again and the error raised (no job the client never heard
        of may run later).
        """
        self.records.insert(job)
        try:
            self.records.write_inflight(job)
        except Exception:
            self.erase(job.id)
            raise
        return job

    def erase(self, job_id: str) -> Job | None:
        """Delete the job's Redis state (record, indexes, events, delivery log); objects: see retention."""
        job = self.get(job_id)
        self.indexes.mark_erased(job_id)
        self.idempotency.release_job(job_id)
        doomed = [keys.job_key(job_id), keys.event_key(job_id), keys.deliveries_key(job_id)]
        with self.redis.pipeline() as pipe:
            if job is not None:
                member = keys.index_member(job)
                pipe.zrem(keys.tenant_index(job.tenant_id), member)
                for status in JobStatus:
                    pipe.zrem(keys.tenant_index(job.tenant_id, status), member)
                event = self.event_for(job_id)
                if event is not None:
                    doomed.append(keys.delivery_seq_key(event.id))
            pipe.zrem(keys.CREATED_INDEX, job_id)
            pipe.zrem(keys.ACTIVE_INDEX, job_id)
            pipe.zrem(keys.WEBHOOKS_OWED, job_id)
            pipe.delete(*doomed, keys.resumes_key(job_id))
            pipe.execute()
        return job

    # --- records and the state machine (`records`) ---

    def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        return self.records.get(job_id, tenant_id)

    def require(self, job_id: str, tenant_id: str | None = None) -> Job:
        return self.records.require(job_id, tenant_id)

    def recover(self, job_id: str) -> Job | None:
        return self.records.recover(job_id)

    def update(self, job_id: str, **changes: Any) -> Job:
        """Atomically apply field changes; `InvalidTransition` if the status may not change that way."""
        return self.records.modify(job_id, lambda _job: changes)

    def modify(self, job_id: str, compute: Callable[[Job], dict[str, Any]]) -> Job:
        return self.records.modify(job_id, compute)

    def cancel(self, job_id: str, tenant_id: str | None = None) -> Job:
        """Cancel a queued or processing job; `InvalidTransition` if it already finished."""
        self.require(job_id, tenant_id)
        return self.update(job_id, status=JobStatus.CANCELED)

    def mirror(self, job: Job) -> None:
        """Write the job record to object storage now (e.g. after an erase-and-restore)."""
        self.records.mirror(job)

    # --- indexes (`indexes`) and what a Redis data loss took (`data_loss`) ---

    def list(
        self, tenant_id: str, status: JobStatus | None = None, cursor: str | None = None, limit: int = 50
    ) -> JobPage:
        return self.indexes.list(tenant_id, status, cursor, limit)

    def count(self, tenant_id: str, status: JobStatus | None = None) -> int:
        return self.indexes.count(tenant_id, status)

    def not_updated_since(self, cutoff: datetime, limit: int = 100) -> list[str]:
        return self.indexes.not_updated_since(cutoff, limit)

    def forget_active(self, job_id: str) -> None:
        self.indexes.forget_active(job_id)

    def count_resume(self, job_id: str) -> int:
        return self.indexes.count_resume(job_id)

    def created_before(self, cutoff: datetime, limit: int = 500) -> list[str]:
        return self.indexes.created_before(cutoff, limit)

    def mark_erased(self, job_id: str) -> None:
        self.indexes.mark_erased(job_id)

    def was_erased(self, job_id: str) -> bool:
        return self.indexes.was_erased(job_id)

    def lost_inflight_jobs(self, limit: int = 1000) -> list[str]:
        return self.data_loss.lost_inflight_jobs(limit)

    def lost_finished_jobs(self, limit: int = 100_000) -> list[str]:
        return self.data_loss.lost_finished_jobs(limit)

    def redis_is_new(self) -> bool:
        return self.data_loss.redis_is_new()

    # --- idempotency (`idempotency`) ---

    def claim_idempotency(self, tenant_id: str, key: str, request_hash: str, job_id: str) -> str:
        return self.idempotency.claim(tenant_id, key, request_hash, job_id)

    def idempotency_key_used(self, tenant_id: str, key: str) -> bool:
        return self.idempotency.used(tenant_id, key)

    def release_idempotency(self, tenant_id: str, key: str) -> None:
        self.idempotency.release(tenant_id, key)

    # --- result cache index (`result_cache`) ---

    def remember_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str, job_id: str) -> None:
        self.result_cache.remember(tenant_id, media_sha256, model_version, variant, job_id)

    def cached_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> str | None:
        return self.result_cache.lookup(tenant_id, media_sha256, model_version, variant)

    def forget_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> None:
        self.result_cache.forget(tenant_id, media_sha256, model_version, variant)

    # --- webhook events and the delivery log (`deliveries`) ---

    def save_event(self, event: WebhookEvent) -> WebhookEvent:
        return self.webhooks.save_event(event)

    def event_for(self, job_id: str) -> WebhookEvent | None:
        return self.webhooks.event_for(job_id)

    def next_attempt_number(self, event_id: str) -> int:
        return self.webhooks.next_attempt_number(event_id)

    def record_delivery(self, job_id: str, attempt: DeliveryAttempt) -> None:
        self.webhooks.record(job_id, attempt)

    def webhooks_overdue(self, cutoff: datetime, limit: int = 100) -> list[str]:
        return self.webhooks.overdue(cutoff, limit)

    def webhook_resent(self, job_id: str, at: datetime) -> None:
        self.webhooks.resent(job_id, at)

    def deliveries(self, job_id: str) -> list[DeliveryAttempt]:
        return self.webhooks.attempts(job_id)

    # --- queues (backpressure and the queue-depth gauge; `deepfake_jobs.queues`) ---

    def queue_depth(self, queue: str) -> int:
        return queues.queue_depth(self.redis, queue)

    def queue_depths(self, names: Iterable[str]) -> dict[str, int]:
        return queues.queue_depths(self.redis, names)

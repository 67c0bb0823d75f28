"""Webhook events and their delivery log: one event per finished job, every attempt, and the webhooks still owed.

A webhook is owed from the job's terminal transition until an attempt settles it (delivered or given up);
the stalled-job sweep resends the overdue ones.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import redis
from pydantic import ValidationError

from deepfake_jobs.models import DeliveryAttempt, DeliveryOutcome, Job
from deepfake_jobs.storage import ObjectStore, inflight_key
from deepfake_jobs.store import keys
from deepfake_jobs.views import WebhookEvent, public_job

log = logging.getLogger(__name__)


class WebhookDeliveries:
    def __init__(self, redis_client: redis.Redis, objects: ObjectStore | None) -> None:
        self.redis = redis_client
        self.objects = objects

    def save_event(self, event: WebhookEvent) -> WebhookEvent:
        """Store the job's event once; a second call (duplicate notify) returns the first event."""
        key = keys.event_key(event.job.id)
        if self.redis.set(key, event.body(), nx=True):
            return event
        return _load_event(self.redis.get(key))

    def event_for(self, job_id: str) -> WebhookEvent | None:
        raw = self.redis.get(keys.event_key(job_id))
        return _load_event(raw) if raw is not None else None

    def next_attempt_number(self, event_id: str) -> int:
        return int(self.redis.incr(keys.delivery_seq_key(event_id)))

    def record(self, job_id: str, attempt: DeliveryAttempt) -> None:
        """Log an attempt; a retrying one is owed again at its retry time, any other settles the webhook."""
        with self.redis.pipeline() as pipe:
            pipe.rpush(keys.deliveries_key(job_id), attempt.model_dump_json())
            retrying = attempt.outcome is DeliveryOutcome.RETRYING and attempt.next_retry_at is not None
            if retrying:
                pipe.zadd(keys.WEBHOOKS_OWED, {job_id: attempt.next_retry_at.timestamp()})
            else:
                pipe.zrem(keys.WEBHOOKS_OWED, job_id)
            pipe.execute()
        if not retrying and self.objects is not None:
            try:
                self.objects.delete(inflight_key(job_id))  # settled: nothing left to rebuild after a Redis loss
            except Exception:  # noqa: BLE001 - at worst a settled webhook is sent again after a Redis loss
                log.warning("could not delete the in-flight record of job %s", job_id, exc_info=True)

    def overdue(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Jobs whose webhook was due before `cutoff` and has neither been delivered nor given up on."""
        ids = self.redis.zrangebyscore(keys.WEBHOOKS_OWED, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [keys.text(job_id) for job_id in ids]

    def resent(self, job_id: str, at: datetime) -> None:
        """Restart the overdue clock of a webhook whose notify task was sent again."""
        self.redis.zadd(keys.WEBHOOKS_OWED, {job_id: at.timestamp()}, xx=True)

    def attempts(self, job_id: str) -> list[DeliveryAttempt]:
        """Every webhook delivery attempt for the job, oldest first."""
        raws = self.redis.lrange(keys.deliveries_key(job_id), 0, -1)
        return [DeliveryAttempt.model_validate_json(raw) for raw in raws]


def _load_event(raw: bytes | str) -> WebhookEvent:
    """A stored event; one stored before events carried the public job document is converted to it (its
    redeliveries then send the public document too)."""
    try:
        return WebhookEvent.model_validate_json(raw)
    except ValidationError:
        legacy = json.loads(raw)
        legacy["job"] = public_job(Job.model_validate(legacy["job"])).document()
        return WebhookEvent.model_validate(legacy)

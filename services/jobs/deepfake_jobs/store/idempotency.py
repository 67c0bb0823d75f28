"""Idempotency-Key bindings: one request (by its hash) to one job per tenant and key, for `idempotency_ttl_s`.

Erasing a job frees the key bound to it, so a retry with that key creates a new job instead of a dangling one.
"""

from __future__ import annotations

import json

import redis

from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.store import keys
from deepfake_jobs.store.errors import IdempotencyConflict


class IdempotencyKeys:
    def __init__(self, redis_client: redis.Redis, settings: PlatformSettings) -> None:
        self.redis = redis_client
        self.settings = settings

    def claim(self, tenant_id: str, key: str, request_hash: str, job_id: str) -> str:
        """Atomically bind an Idempotency-Key to `job_id`; returns the job id that owns the key.

        The caller created nothing yet: if the returned id is `job_id`, it goes on and creates the job;
        otherwise it answers with the existing job. `IdempotencyConflict` if the key was used for a
        different request body (`request_hash` differs).
        """
        redis_key = keys.idempotency_key(tenant_id, key)
        value = json.dumps({"request_hash": request_hash, "job_id": job_id})
        if self.redis.set(redis_key, value, nx=True, ex=self.settings.idempotency_ttl_s):
            # Which key names this job, so that erasing the job frees the key (see `release_job`).
            self.redis.set(keys.idempotency_of(job_id), redis_key, ex=self.settings.idempotency_ttl_s)
            return job_id
        raw = self.redis.get(redis_key)
        if raw is None:  # expired between the two calls: claim again
            return self.claim(tenant_id, key, request_hash, job_id)
        existing = json.loads(raw)
        if existing["request_hash"] != request_hash:
            raise IdempotencyConflict(key, existing["job_id"])
        return str(existing["job_id"])

    def used(self, tenant_id: str, key: str) -> bool:
        """Whether the tenant's Idempotency-Key is bound to a job now (e.g. to skip re-reading an upload)."""
        return bool(self.redis.exists(keys.idempotency_key(tenant_id, key)))

    def release(self, tenant_id: str, key: str) -> None:
        """Forget a key whose job could not be created, so the client can retry with it."""
        self.redis.delete(keys.idempotency_key(tenant_id, key))

    def release_job(self, job_id: str) -> None:
        """Free the key bound to an erased job: a retry with it then creates a new job instead of pointing at
        one that no longer exists. Only if the key still names this job (it may have been re-bound since)."""
        redis_key = self.redis.get(keys.idempotency_of(job_id))
        if redis_key is not None:
            raw = self.redis.get(redis_key)
            if raw is not None and json.loads(raw).get("job_id") == job_id:
                self.redis.delete(redis_key)
            self.redis.delete(keys.idempotency_of(job_id))

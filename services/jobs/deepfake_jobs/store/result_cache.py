"""The result cache index: which succeeded job of a tenant answers a media hash for a model and option variant.

Only the index lives here; copying the earlier job's result objects is the worker's (`deepfake_worker.cache`).
"""

from __future__ import annotations

import redis

from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.store import keys


class ResultCache:
    def __init__(self, redis_client: redis.Redis, settings: PlatformSettings) -> None:
        self.redis = redis_client
        self.settings = settings

    def remember(self, tenant_id: str, media_sha256: str, model_version: str, variant: str, job_id: str) -> None:
        """Index a succeeded job's result under its tenant and media hash; expires with retention."""
        ttl = self.settings.retention_days * 86400
        self.redis.set(keys.cache_key(tenant_id, media_sha256, model_version, variant), job_id, ex=ttl)

    def lookup(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> str | None:
        """Id of a succeeded job of this tenant whose result answers this media; the caller checks its objects."""
        raw = self.redis.get(keys.cache_key(tenant_id, media_sha256, model_version, variant))
        return keys.text(raw) if raw is not None else None

    def forget(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> None:
        self.redis.delete(keys.cache_key(tenant_id, media_sha256, model_version, variant))

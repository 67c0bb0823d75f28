"""The clients one worker process uses (settings, object storage, job store, tenants), built once after the fork."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from deepfake_jobs.storage import ObjectStore
from deepfake_jobs.store import JobStore
from deepfake_jobs.tenants import TenantRegistry

from deepfake_worker.settings import WorkerSettings, get_worker_settings


@dataclass(frozen=True)
class Services:
    settings: WorkerSettings
    objects: ObjectStore
    store: JobStore
    tenants: TenantRegistry

    def webhook_secret(self, tenant_id: str) -> str:
        return self.tenants.webhook_secret(tenant_id, self.settings)


@lru_cache(maxsize=1)
def services() -> Services:
    """Clients of this worker process (created after the fork, on first use)."""
    settings = get_worker_settings()
    objects = ObjectStore(settings)
    store = JobStore.from_settings(settings, objects)
    tenants = TenantRegistry.from_env(redis=store.redis, objects=objects)
    return Services(settings=settings, objects=objects, store=store, tenants=tenants)

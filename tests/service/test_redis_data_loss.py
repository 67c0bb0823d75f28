"""Redis loses its data (a restart without persistence, a failover to an empty replica): nothing that object
storage holds is lost. Recovery rebuilds the finished jobs' index from `jobs/*/job.json` (listings show them again)
and the tenants stored by the operator CLI from `tenants/*.json` (their keys work again); retention scans object
storage itself, so what Redis forgot is still erased on time.

A private Redis and bucket (flushing the session's would break every other test), a gateway on them; no worker:
the jobs are created finished, as a worker leaves them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import redis
from deepfake_devstack import RedisServer
from deepfake_jobs.models import Job, JobStatus, MediaRef, MediaSourceKind, utcnow
from deepfake_jobs.retention import erase_expired
from deepfake_jobs.storage import ObjectStore, job_record_key, upload_key
from deepfake_jobs.store import JobStore
from deepfake_jobs.tenants import Tenant, TenantRegistry, hash_api_key, new_api_key
from deepfake_worker.recovery import rebuild_from_object_storage, recover_after_data_loss

from tests.stack.fixtures import running_gateway
from tests.stack.gateway_support import Gateway

FINISHED_JOBS = 5
RECOVERED_PREFIXES = ("uploads/", "jobs/", "results/", "inflight/")


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(private_redis: RedisServer, service_env: dict[str, str], platform_settings, tmp_path_factory):  # noqa: ANN001, ANN201
    bucket = f"deepfake-loss-{uuid.uuid4().hex[:8]}"
    settings = platform_settings.model_copy(update={"redis_url": private_redis.url, "s3_bucket": bucket})
    objects = ObjectStore(settings)
    objects.ensure_bucket()
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    store = JobStore(client, objects, settings)
    tenants = TenantRegistry(redis=client, objects=objects, cache_ttl_s=0)
    env = {
        **service_env,
        "DEEPFAKE_REDIS_URL": private_redis.url,
        "DEEPFAKE_S3_BUCKET": bucket,
        "DEEPFAKE_TENANT_CACHE_TTL_S": "0",
        "DEEPFAKE_QUEUE_PREPROCESS": f"unconsumed-{uuid.uuid4().hex[:6]}",
    }
    with running_gateway(env, tmp_path_factory.mktemp("loss-gateway"), {"filed": (100_000, 100)}) as gateway:
        yield gateway, store, tenants, objects


def _finished_job(store: JobStore, objects: ObjectStore, tenant_id: str) -> Job:
    job = Job(tenant_id=tenant_id, media=MediaRef(source=MediaSourceKind.UPLOAD, filename="a.jpg"))
    job.media.object_key = upload_key(tenant_id, job.id)
    objects.put_bytes(job.media.object_key, b"\xff\xd8\xffmedia")
    store.create(job)
    store.update(job.id, status=JobStatus.PROCESSING)
    store.update(job.id, status=JobStatus.SUCCEEDED, verdict="real")  # mirrors jobs/{id}/job.json
    return job


def _listed(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, params={"limit": 50})


def test_recovery_rebuilds_listings_and_tenants_and_retention_scans_object_storage(stack) -> None:  # noqa: ANN001
    gateway, store, tenants, objects = stack
    key_b = new_api_key()
    tenant_b = Tenant(id=f"b-{uuid.uuid4().hex[:6]}", api_key_sha256=[hash_api_key(key_b)])
    tenants.put(tenant_b)  # as `python -m deepfake_jobs.tenants put` does: Redis and tenants/{id}.json
    filed = gateway.tenant_ids["filed"]
    jobs = [_finished_job(store, objects, tenant_b.id) for _ in range(FINISHED_JOBS)]
    jobs.append(_finished_job(store, objects, filed))
    assert all(objects.exists(job_record_key(job.id)) for job in jobs)
    orphan = upload_key(tenant_b.id, uuid.uuid4().hex)  # a presigned upload that was never submitted
    objects.put_bytes(orphan, b"never submitted")
    assert len(_listed(gateway, key_b).json()["jobs"]) == FINISHED_JOBS

    store.redis.flushall()  # the data loss
    assert _listed(gateway, key_b).status_code == 401, "the Redis tenant is gone with Redis"
    assert _listed(gateway, gateway.key("filed")).json()["jobs"] == []

    report = recover_after_data_loss(store, tenants)  # what the worker's recovery sweep runs first
    assert report is not None and report.tenants == [tenant_b.id]
    assert sorted(report.finished_jobs) == sorted(job.id for job in jobs)
    assert recover_after_data_loss(store, tenants) is None, "once per Redis data set, not every sweep"
    deadline = time.monotonic() + 30
    while (listed := _listed(gateway, key_b)).status_code != 200:
        assert time.monotonic() < deadline, listed.text
        time.sleep(0.2)
    assert sorted(j["id"] for j in listed.json()["jobs"]) == sorted(job.id for job in jobs[:FINISHED_JOBS])
    assert [j["id"] for j in _listed(gateway, gateway.key("filed")).json()["jobs"]] == [jobs[-1].id]
    assert {j["status"] for j in listed.json()["jobs"]} == {"succeeded"}

    store.redis.flushall()  # lost again, and this time retention runs before any recovery
    report = erase_expired(store, objects, retention_days=1, now=utcnow() + timedelta(days=2))
    assert report.jobs_erased >= FINISHED_JOBS + 1
    left = [key for prefix in RECOVERED_PREFIXES for key in objects.list_keys(prefix)]
    assert left == [], f"retention left what Redis forgot: {left}"
    assert rebuild_from_object_storage(store, tenants).finished_jobs == [], "erased jobs do not come back"

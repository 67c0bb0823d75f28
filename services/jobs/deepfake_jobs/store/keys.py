"""The Redis key layout of the job store: every key name in one place, and the index member of a job.

Redis keys (prefix `deepfake:`):
  job:{id}                            the Job JSON
  jobs:tenant:{tenant}                sorted set (lexicographic, score 0) of "{created_us}:{id}", newest last
  jobs:tenant:{tenant}:status:{s}     the same, per status (moved atomically with the status)
  jobs:created                        sorted set id -> created_at epoch seconds (retention scans it)
  jobs:active                         sorted set id -> last update, of unfinished jobs (the stalled-job sweep)
  webhooks:owed                       sorted set id -> when the next delivery attempt is due, of finished jobs
  resumes:{id}                        how often the stalled-job sweep re-drove the job
  erased:{id}                         the job is being erased (a late mirror write must not bring it back)
  epoch                               set once per Redis data set (tells a Redis that started empty)
  idempotency:{tenant}:{sha256(key)}  {"request_hash", "job_id"} for Idempotency-Key, expires
  idempotency-of:{id}                 the idempotency key bound to the job (freed when the job is erased)
  cache:{tenant}:{model_version}:{variant}:{media_sha256}   id of the tenant's job whose result answers this media
  event:{job_id}                      the job's WebhookEvent (one per job; the body as sent)
  deliveries:{job_id}                 list of DeliveryAttempt JSON, oldest first
  delivery_seq:{event_id}             attempt counter
"""

from __future__ import annotations

import hashlib

from deepfake_jobs.models import Job, JobStatus

PREFIX = "deepfake:"
CREATED_INDEX = f"{PREFIX}jobs:created"
# Unfinished jobs scored by their last update: what the stalled-job sweeper reads (deepfake_worker.recovery).
ACTIVE_INDEX = f"{PREFIX}jobs:active"
# Finished jobs whose webhook is still owed, scored by when the next delivery attempt is due.
WEBHOOKS_OWED = f"{PREFIX}webhooks:owed"
EPOCH_KEY = f"{PREFIX}epoch"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def tenant_index(tenant_id: str, status: JobStatus | None = None) -> str:
    """The tenant's listing index, or with `status` the index of its jobs in that status."""
    base = f"{PREFIX}jobs:tenant:{tenant_id}"
    return f"{base}:status:{status.value}" if status else base


def resumes_key(job_id: str) -> str:
    return f"{PREFIX}resumes:{job_id}"


def erased_key(job_id: str) -> str:
    return f"{PREFIX}erased:{job_id}"


def idempotency_key(tenant_id: str, key: str) -> str:
    return f"{PREFIX}idempotency:{tenant_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def idempotency_of(job_id: str) -> str:
    return f"{PREFIX}idempotency-of:{job_id}"


def cache_key(tenant_id: str, media_sha256: str, model_version: str, variant: str) -> str:
    # The tenant is part of the key: a cache shared across tenants would tell tenant B that someone else
    # analysed exactly these bytes (`cache_hit: true` at once), a leak of other tenants' activity.
    return f"{PREFIX}cache:{tenant_id}:{model_version}:{variant}:{media_sha256}"


def event_key(job_id: str) -> str:
    return f"{PREFIX}event:{job_id}"


def deliveries_key(job_id: str) -> str:
    return f"{PREFIX}deliveries:{job_id}"


def delivery_seq_key(event_id: str) -> str:
    return f"{PREFIX}delivery_seq:{event_id}"


def index_member(job: Job) -> str:
    """The job's member in the tenant indexes: zero-padded microseconds sort lexicographically in time order;
    the id breaks ties."""
    return f"{int(job.created_at.timestamp() * 1_000_000):020d}:{job.id}"


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

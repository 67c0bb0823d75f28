"""Job records in Redis: creation, tenant-scoped reads, atomic state-machine updates, listings and indexes.

Redis is the fast path; object storage is the source of truth for finished jobs: every terminal transition
also writes `jobs/{id}/job.json`, and `recover()` (called by `get()` on a miss) rebuilds the record from it.

Redis keys (prefix `deepfake:`):
  job:{id}                            the Job JSON
  jobs:tenant:{tenant}                sorted set (lexicographic, score 0) of "{created_us}:{id}", newest last
  jobs:tenant:{tenant}:status:{s}     the same, per status (moved atomically with the status)
  jobs:created                        sorted set id -> created_at epoch seconds (retention scans it)
  idempotency:{tenant}:{sha256(key)}  {"request_hash", "job_id"} for Idempotency-Key, expires
  cache:{tenant}:{model_version}:{variant}:{media_sha256}   id of the tenant's job whose result answers this media
  event:{job_id}                      the job's WebhookEvent (one per job; the body as sent)
  deliveries:{job_id}                 list of DeliveryAttempt JSON, oldest first
  delivery_seq:{event_id}             attempt counter
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import redis
from pydantic import ValidationError

from deepfake_jobs import queues
from deepfake_jobs.models import (
    ALLOWED_TRANSITIONS,
    DeliveryAttempt,
    DeliveryOutcome,
    Job,
    JobStatus,
    utcnow,
)
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.storage import (
    INFLIGHT_PREFIX,
    JOB_RECORD_NAME,
    JOBS_PREFIX,
    ObjectStore,
    inflight_key,
    job_record_key,
)
from deepfake_jobs.views import WebhookEvent, public_job

log = logging.getLogger(__name__)

PREFIX = "deepfake:"
WEBHOOK_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})  # the finished jobs that send one
MAX_LIST_LIMIT = 200
INFLIGHT_PAGE = 500  # in-flight records checked against Redis per round trip
ERASED_MARK_TTL_S = 3600  # a late mirror write follows its Redis write within one S3 request; marks stay few


class JobNotFound(KeyError):
    """No job with this id (or not one of this tenant's)."""


class JobExists(Exception):
    """A job with this id was already created."""


class InvalidTransition(Exception):
    """The change is not allowed from the job's current status; `job` is the record as it stands."""

    def __init__(self, job: Job, target: JobStatus | None) -> None:
        if job.terminal:
            detail = f"job {job.id} is {job.status.value}; a finished job no longer changes"
        else:
            detail = f"job {job.id} cannot go from {job.status.value} to {target.value if target else '?'}"
        super().__init__(detail)
        self.job = job
        self.target = target


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request (job {job_id}); "
            "use a new key for a new request."
        )
        self.job_id = job_id


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while page := list(islice(iterator, size)):
        yield page


def _index_member(job: Job) -> str:
    # Zero-padded microseconds sort lexicographically in time order; the id breaks ties.
    return f"{int(job.created_at.timestamp() * 1_000_000):020d}:{job.id}"


def _encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("invalid cursor; pass the next_cursor of a previous page") from error
    if ":" not in member:
        raise ValueError("invalid cursor; pass the next_cursor of a previous page")
    return member


def _load_event(raw: bytes | str) -> WebhookEvent:
    """A stored event; one stored before events carried the public job document is converted to it (its
    redeliveries then send the public document too)."""
    try:
        return WebhookEvent.model_validate_json(raw)
    except ValidationError:
        legacy = json.loads(raw)
        legacy["job"] = public_job(Job.model_validate(legacy["job"])).document()
        return WebhookEvent.model_validate(legacy)


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

    @classmethod
    def from_settings(cls, settings: PlatformSettings, objects: ObjectStore | None = None) -> JobStore:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        return cls(client, objects if objects is not None else ObjectStore(settings), settings)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # --- keys ---

    @staticmethod
    def _job_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def _tenant_index(tenant_id: str, status: JobStatus | None = None) -> str:
        base = f"{PREFIX}jobs:tenant:{tenant_id}"
        return f"{base}:status:{status.value}" if status else base

    _created_index = f"{PREFIX}jobs:created"
    # Unfinished jobs scored by their last update: what the stalled-job sweeper reads (deepfake_worker.recovery).
    _active_index = f"{PREFIX}jobs:active"
    # Finished jobs whose webhook is still owed, scored by when the next delivery attempt is due.
    _webhooks_owed = f"{PREFIX}webhooks:owed"

    @staticmethod
    def _resumes_key(job_id: str) -> str:
        return f"{PREFIX}resumes:{job_id}"

    @staticmethod
    def _erased_key(job_id: str) -> str:
        return f"{PREFIX}erased:{job_id}"

    # --- create / read ---

    def create(self, job: Job) -> Job:
        """Store a new job; `JobExists` if the id is taken.

        An unfinished job's record is also written to object storage (`inflight/{id}.json`), so that a Redis
        that loses its data loses no job: `recover` and the stalled-job sweep rebuild it from there. If that
        write fails, the job is removed from Redis again and the error raised (no job the client never heard
        of may run later).
        """
        member = _index_member(job)
        with self.redis.pipeline() as pipe:
            pipe.set(self._job_key(job.id), job.model_dump_json(), nx=True)
            pipe.zadd(self._tenant_index(job.tenant_id), {member: 0})
            pipe.zadd(self._tenant_index(job.tenant_id, job.status), {member: 0})
            pipe.zadd(self._created_index, {job.id: job.created_at.timestamp()})
            if not job.terminal:
                pipe.zadd(self._active_index, {job.id: job.updated_at.timestamp()})
            created, *_ = pipe.execute()
        if not created:
            raise JobExists(job.id)
        if self.objects is not None and not job.terminal:
            try:
                self.objects.put_json(inflight_key(job.id), job.model_dump_json())
            except Exception:
                self.erase(job.id)
                raise
        return job

    def get(self, job_id: str, tenant_id: str | None = None) -> Job | None:
        """The job, or None; with `tenant_id`, another tenant's job is None (no existence leak)."""
        raw = self.redis.get(self._job_key(job_id))
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
        if self.objects is None or not job_id or "/" in job_id or self.was_erased(job_id):
            return None
        unsettled = self.objects.exists(inflight_key(job_id))
        key = job_record_key(job_id) if self.objects.exists(job_record_key(job_id)) else None
        key = key or (inflight_key(job_id) if unsettled else None)
        if key is None:
            return None
        job = Job.model_validate_json(self.objects.get_bytes(key))
        member = _index_member(job)
        with self.redis.pipeline() as pipe:
            pipe.set(self._job_key(job.id), job.model_dump_json(), nx=True)
            pipe.zadd(self._tenant_index(job.tenant_id), {member: 0})
            pipe.zadd(self._tenant_index(job.tenant_id, job.status), {member: 0})
            pipe.zadd(self._created_index, {job.id: job.created_at.timestamp()})
            if not job.terminal:
                pipe.zadd(self._active_index, {job.id: job.updated_at.timestamp()}, nx=True)
            elif unsettled and self._owes_webhook(job):  # finished, its webhook not yet settled
                pipe.zadd(self._webhooks_owed, {job.id: job.updated_at.timestamp()}, nx=True)
            pipe.execute()
        log.warning("job %s recovered from object storage", job_id)
        return job

    # --- update (the state machine) ---

    def update(self, job_id: str, **changes: Any) -> Job:
        """Atomically apply field changes; `InvalidTransition` if the status may not change that way.

        A terminal job refuses every change, so a late worker never overwrites a canceled job.
        """
        return self.modify(job_id, lambda _job: changes)

    def modify(self, job_id: str, compute: Callable[[Job], dict[str, Any]]) -> Job:
        """Like `update`, with changes computed from the current record (e.g. appending to a list).

        `compute` may run more than once (optimistic locking retries on a concurrent write).
        """
        key = self._job_key(job_id)
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
                    updated = self._apply(current, compute(current))
                    pipe.multi()
                    pipe.set(key, updated.model_dump_json())
                    if updated.status != current.status:
                        member = _index_member(current)
                        pipe.zrem(self._tenant_index(current.tenant_id, current.status), member)
                        pipe.zadd(self._tenant_index(current.tenant_id, updated.status), {member: 0})
                    if updated.terminal:
                        pipe.zrem(self._active_index, job_id)
                        if self._owes_webhook(updated):
                            pipe.zadd(self._webhooks_owed, {job_id: updated.updated_at.timestamp()})
                    else:
                        pipe.zadd(self._active_index, {job_id: updated.updated_at.timestamp()})
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        if updated.terminal and not current.terminal:
            self._mirror(updated)
        return updated

    @staticmethod
    def _apply(current: Job, changes: dict[str, Any]) -> Job:
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

    def cancel(self, job_id: str, tenant_id: str | None = None) -> Job:
        """Cancel a queued or processing job; `InvalidTransition` if it already finished."""
        self.require(job_id, tenant_id)
        return self.update(job_id, status=JobStatus.CANCELED)

    def _mirror(self, job: Job) -> None:
        if self.objects is None:
            return
        try:
            self.objects.put_json(job_record_key(job.id), job.model_dump_json())
            if self.was_erased(job.id):  # erased while we wrote: leave nothing of it behind (see `mark_erased`)
                self.objects.delete(job_record_key(job.id))
                return
            if not self._owes_webhook(job):  # else it stays until the webhook settles (`record_delivery`)
                self.objects.delete(inflight_key(job.id))  # after the final record exists, never before
        except Exception:  # Redis holds the record; the mirror is retried on the next terminal write
            log.exception("could not mirror job %s to object storage", job.id)

    @staticmethod
    def _owes_webhook(job: Job) -> bool:
        return job.status in WEBHOOK_STATUSES and bool(job.options.callback_url)

    def lost_inflight_jobs(self, limit: int = 1000) -> list[str]:
        """Jobs recorded in object storage as unfinished (or finished with their webhook unsettled) whose Redis
        record is gone (Redis lost its data)."""
        if self.objects is None:
            return []
        lost: list[str] = []
        for page in _pages(self.objects.list_keys(INFLIGHT_PREFIX), INFLIGHT_PAGE):
            ids = [key.removeprefix(INFLIGHT_PREFIX).removesuffix(".json") for key in page]
            with self.redis.pipeline(transaction=False) as pipe:  # one round trip per page: the sweep runs often
                for job_id in ids:
                    pipe.exists(self._job_key(job_id))
                known = pipe.execute()
            lost.extend(job_id for job_id, exists in zip(ids, known, strict=True) if not exists)
            if len(lost) >= limit:
                return lost[:limit]
        return lost

    def lost_finished_jobs(self, limit: int = 100_000) -> list[str]:
        """Finished jobs mirrored to object storage (`jobs/{id}/job.json`) whose Redis record is gone: after a
        Redis data loss they would be missing from every listing and from retention until each was read by id."""
        if self.objects is None:
            return []
        ids = (
            key.removeprefix(JOBS_PREFIX).removesuffix("/" + JOB_RECORD_NAME)
            for key in self.objects.list_keys(JOBS_PREFIX)
            if key.endswith("/" + JOB_RECORD_NAME)
        )
        lost: list[str] = []
        for page in _pages(ids, INFLIGHT_PAGE):
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in page:
                    pipe.exists(self._job_key(job_id))
                known = pipe.execute()
            lost.extend(job_id for job_id, exists in zip(page, known, strict=True) if not exists)
            if len(lost) >= limit:
                return lost[:limit]
        return lost

    _epoch_key = f"{PREFIX}epoch"

    def redis_is_new(self) -> bool:
        """True once per Redis data set: the first call after Redis started empty (first start, or it lost its
        data). Recovery then rebuilds from object storage what only Redis indexed (listings, tenants)."""
        return bool(self.redis.set(self._epoch_key, utcnow().isoformat(), nx=True))

    def mirror(self, job: Job) -> None:
        """Write the job record to object storage now (e.g. after an erase-and-restore)."""
        self._mirror(job)

    # --- listing ---

    def list(
        self,
        tenant_id: str,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """The tenant's jobs, newest first; pass `next_cursor` back to get the next page."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        index = self._tenant_index(tenant_id, JobStatus(status) if status else None)
        upper = f"({_decode_cursor(cursor)}" if cursor else "+"
        members = [_text(m) for m in self.redis.zrevrangebylex(index, upper, "-", start=0, num=limit + 1)]
        page = members[:limit]
        raws = self.redis.mget([self._job_key(member.split(":", 1)[1]) for member in page]) if page else []
        jobs: list[Job] = []
        stale: list[str] = []
        for member, raw in zip(page, raws, strict=True):
            if raw is None:
                stale.append(member)
            else:
                jobs.append(Job.model_validate_json(raw))
        if stale:  # erased jobs whose index entry outlived them
            self.redis.zrem(index, *stale)
        next_cursor = _encode_cursor(page[-1]) if len(members) > limit else None
        return JobPage(jobs=jobs, next_cursor=next_cursor)

    def count(self, tenant_id: str, status: JobStatus | None = None) -> int:
        return int(self.redis.zcard(self._tenant_index(tenant_id, JobStatus(status) if status else None)))

    def not_updated_since(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Ids of unfinished jobs whose record has not changed since `cutoff`, least recently updated first."""
        ids = self.redis.zrangebyscore(self._active_index, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [_text(job_id) for job_id in ids]

    def forget_active(self, job_id: str) -> None:
        """Drop a job from the unfinished index (an entry that outlived its job)."""
        self.redis.zrem(self._active_index, job_id)

    def count_resume(self, job_id: str) -> int:
        """Count one more resumption of a stalled job; returns how many it has had, this one included."""
        key = self._resumes_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, int(timedelta(days=self.settings.retention_days + 1).total_seconds()))
            count, _ = pipe.execute()
        return int(count)

    def created_before(self, cutoff: datetime, limit: int = 500) -> list[str]:
        """Ids of jobs created before `cutoff`, oldest first (retention)."""
        ids = self.redis.zrangebyscore(self._created_index, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [_text(job_id) for job_id in ids]

    # --- erase ---

    def mark_erased(self, job_id: str) -> None:
        """Record that the job is being erased, before any of it is deleted.

        A worker may still be finishing the job and mirror it to `jobs/{id}/job.json` after the erase deleted
        that prefix; `recover` would then bring the erased job back. The mirror and `recover` check this mark
        (the mirror after writing), so whichever order the two meet in, nothing of the job survives.
        """
        self.redis.set(self._erased_key(job_id), "1", ex=ERASED_MARK_TTL_S)

    def was_erased(self, job_id: str) -> bool:
        return bool(self.redis.exists(self._erased_key(job_id)))

    def erase(self, job_id: str) -> Job | None:
        """Delete the job's Redis state (record, indexes, events, delivery log); objects: see retention."""
        job = self.get(job_id)
        self.mark_erased(job_id)
        self._release_idempotency_of(job_id)
        keys = [self._job_key(job_id), f"{PREFIX}event:{job_id}", f"{PREFIX}deliveries:{job_id}"]
        with self.redis.pipeline() as pipe:
            if job is not None:
                member = _index_member(job)
                pipe.zrem(self._tenant_index(job.tenant_id), member)
                for status in JobStatus:
                    pipe.zrem(self._tenant_index(job.tenant_id, status), member)
                event = self.event_for(job_id)
                if event is not None:
                    keys.append(f"{PREFIX}delivery_seq:{event.id}")
            pipe.zrem(self._created_index, job_id)
            pipe.zrem(self._active_index, job_id)
            pipe.zrem(self._webhooks_owed, job_id)
            pipe.delete(*keys, self._resumes_key(job_id))
            pipe.execute()
        return job

    # --- idempotency ---

    def claim_idempotency(self, tenant_id: str, key: str, request_hash: str, job_id: str) -> str:
        """Atomically bind an Idempotency-Key to `job_id`; returns the job id that owns the key.

        The caller created nothing yet: if the returned id is `job_id`, it goes on and creates the job;
        otherwise it answers with the existing job. `IdempotencyConflict` if the key was used for a
        different request body (`request_hash` differs).
        """
        redis_key = self._idempotency_key(tenant_id, key)
        value = json.dumps({"request_hash": request_hash, "job_id": job_id})
        if self.redis.set(redis_key, value, nx=True, ex=self.settings.idempotency_ttl_s):
            # Which key names this job, so that erasing the job frees the key (see `erase`).
            self.redis.set(self._idempotency_of(job_id), redis_key, ex=self.settings.idempotency_ttl_s)
            return job_id
        raw = self.redis.get(redis_key)
        if raw is None:  # expired between the two calls: claim again
            return self.claim_idempotency(tenant_id, key, request_hash, job_id)
        existing = json.loads(raw)
        if existing["request_hash"] != request_hash:
            raise IdempotencyConflict(key, existing["job_id"])
        return str(existing["job_id"])

    def idempotency_key_used(self, tenant_id: str, key: str) -> bool:
        """Whether the tenant's Idempotency-Key is bound to a job now (e.g. to skip re-reading an upload)."""
        return bool(self.redis.exists(self._idempotency_key(tenant_id, key)))

    def release_idempotency(self, tenant_id: str, key: str) -> None:
        """Forget a key whose job could not be created, so the client can retry with it."""
        self.redis.delete(self._idempotency_key(tenant_id, key))

    def _release_idempotency_of(self, job_id: str) -> None:
        """Free the key bound to an erased job: a retry with it then creates a new job instead of pointing at
        one that no longer exists. Only if the key still names this job (it may have been re-bound since)."""
        redis_key = self.redis.get(self._idempotency_of(job_id))
        if redis_key is not None:
            raw = self.redis.get(redis_key)
            if raw is not None and json.loads(raw).get("job_id") == job_id:
                self.redis.delete(redis_key)
            self.redis.delete(self._idempotency_of(job_id))

    @staticmethod
    def _idempotency_of(job_id: str) -> str:
        return f"{PREFIX}idempotency-of:{job_id}"

    @staticmethod
    def _idempotency_key(tenant_id: str, key: str) -> str:
        return f"{PREFIX}idempotency:{tenant_id}:{hashlib.sha256(key.encode()).hexdigest()}"

    # --- result cache index ---

    @staticmethod
    def _cache_key(tenant_id: str, media_sha256: str, model_version: str, variant: str) -> str:
        # The tenant is part of the key: a cache shared across tenants would tell tenant B that someone else
        # analysed exactly these bytes (`cache_hit: true` at once), a leak of other tenants' activity.
        return f"{PREFIX}cache:{tenant_id}:{model_version}:{variant}:{media_sha256}"

    def remember_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str, job_id: str) -> None:
        """Index a succeeded job's result under its tenant and media hash; expires with retention."""
        ttl = self.settings.retention_days * 86400
        self.redis.set(self._cache_key(tenant_id, media_sha256, model_version, variant), job_id, ex=ttl)

    def cached_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> str | None:
        """Id of a succeeded job of this tenant whose result answers this media; the caller checks its objects."""
        raw = self.redis.get(self._cache_key(tenant_id, media_sha256, model_version, variant))
        return _text(raw) if raw is not None else None

    def forget_result(self, tenant_id: str, media_sha256: str, model_version: str, variant: str) -> None:
        self.redis.delete(self._cache_key(tenant_id, media_sha256, model_version, variant))

    # --- webhook events and the delivery log ---

    def save_event(self, event: WebhookEvent) -> WebhookEvent:
        """Store the job's event once; a second call (duplicate notify) returns the first event."""
        key = f"{PREFIX}event:{event.job.id}"
        if self.redis.set(key, event.body(), nx=True):
            return event
        return _load_event(self.redis.get(key))

    def event_for(self, job_id: str) -> WebhookEvent | None:
        raw = self.redis.get(f"{PREFIX}event:{job_id}")
        return _load_event(raw) if raw is not None else None

    def next_attempt_number(self, event_id: str) -> int:
        return int(self.redis.incr(f"{PREFIX}delivery_seq:{event_id}"))

    def record_delivery(self, job_id: str, attempt: DeliveryAttempt) -> None:
        """Log an attempt; a retrying one is owed again at its retry time, any other settles the webhook."""
        with self.redis.pipeline() as pipe:
            pipe.rpush(f"{PREFIX}deliveries:{job_id}", attempt.model_dump_json())
            retrying = attempt.outcome is DeliveryOutcome.RETRYING and attempt.next_retry_at is not None
            if retrying:
                pipe.zadd(self._webhooks_owed, {job_id: attempt.next_retry_at.timestamp()})
            else:
                pipe.zrem(self._webhooks_owed, job_id)
            pipe.execute()
        if not retrying and self.objects is not None:
            try:
                self.objects.delete(inflight_key(job_id))  # settled: nothing left to rebuild after a Redis loss
            except Exception:  # noqa: BLE001 - at worst a settled webhook is sent again after a Redis loss
                log.warning("could not delete the in-flight record of job %s", job_id, exc_info=True)

    def webhooks_overdue(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Jobs whose webhook was due before `cutoff` and has neither been delivered nor given up on."""
        ids = self.redis.zrangebyscore(self._webhooks_owed, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [_text(job_id) for job_id in ids]

    def webhook_resent(self, job_id: str, at: datetime) -> None:
        """Restart the overdue clock of a webhook whose notify task was sent again."""
        self.redis.zadd(self._webhooks_owed, {job_id: at.timestamp()}, xx=True)

    def deliveries(self, job_id: str) -> list[DeliveryAttempt]:
        """Every webhook delivery attempt for the job, oldest first."""
        raws = self.redis.lrange(f"{PREFIX}deliveries:{job_id}", 0, -1)
        return [DeliveryAttempt.model_validate_json(raw) for raw in raws]

    # --- queues (backpressure and the queue-depth gauge) ---

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue (all priority lists); reserved/ETA messages are not counted."""
        return queues.queue_depth(self.redis, queue)

    def queue_depths(self, names: Iterable[str]) -> dict[str, int]:
        return queues.queue_depths(self.redis, names)

"""The job store's indexes: tenant listings (paged by cursor), the stalled-job and retention indexes, erase marks.

Each index is a Redis sorted set named in `deepfake_jobs.store.keys`; the job records keep them in step.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from deepfake_jobs.models import Job, JobStatus
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.store import keys

MAX_LIST_LIMIT = 200
ERASED_MARK_TTL_S = 3600  # a late mirror write follows its Redis write within one S3 request; marks stay few


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobIndexes:
    """Reads of the indexes, and the marks of jobs being erased."""

    def __init__(self, redis_client: redis.Redis, settings: PlatformSettings) -> None:
        self.redis = redis_client
        self.settings = settings

    def list(
        self,
        tenant_id: str,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """The tenant's jobs, newest first; pass `next_cursor` back to get the next page."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        index = keys.tenant_index(tenant_id, JobStatus(status) if status else None)
        upper = f"({_decode_cursor(cursor)}" if cursor else "+"
        members = [keys.text(m) for m in self.redis.zrevrangebylex(index, upper, "-", start=0, num=limit + 1)]
        page = members[:limit]
        raws = self.redis.mget([keys.job_key(member.split(":", 1)[1]) for member in page]) if page else []
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
        return int(self.redis.zcard(keys.tenant_index(tenant_id, JobStatus(status) if status else None)))

    def not_updated_since(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Ids of unfinished jobs whose record has not changed since `cutoff`, least recently updated first."""
        ids = self.redis.zrangebyscore(keys.ACTIVE_INDEX, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [keys.text(job_id) for job_id in ids]

    def forget_active(self, job_id: str) -> None:
        """Drop a job from the unfinished index (an entry that outlived its job)."""
        self.redis.zrem(keys.ACTIVE_INDEX, job_id)

    def count_resume(self, job_id: str) -> int:
        """Count one more resumption of a stalled job; returns how many it has had, this one included."""
        key = keys.resumes_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, int(timedelta(days=self.settings.retention_days + 1).total_seconds()))
            count, _ = pipe.execute()
        return int(count)

    def created_before(self, cutoff: datetime, limit: int = 500) -> list[str]:
        """Ids of jobs created before `cutoff`, oldest first (retention)."""
        ids = self.redis.zrangebyscore(keys.CREATED_INDEX, "-inf", f"({cutoff.timestamp()}", start=0, num=limit)
        return [keys.text(job_id) for job_id in ids]

    def mark_erased(self, job_id: str) -> None:
        """Record that the job is being erased, before any of it is deleted.

        A worker may still be finishing the job and mirror it to `jobs/{id}/job.json` after the erase deleted
        that prefix; `recover` would then bring the erased job back. The mirror and `recover` check this mark
        (the mirror after writing), so whichever order the two meet in, nothing of the job survives.
        """
        self.redis.set(keys.erased_key(job_id), "1", ex=ERASED_MARK_TTL_S)

    def was_erased(self, job_id: str) -> bool:
        return bool(self.redis.exists(keys.erased_key(job_id)))


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

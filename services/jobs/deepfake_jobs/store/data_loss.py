"""Finding what a Redis data loss took: jobs that object storage still holds but Redis no longer knows.

The worker's recovery (`deepfake_worker.recovery`) rebuilds them; this module only finds them, page by page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import redis

from deepfake_jobs.models import utcnow
from deepfake_jobs.storage import INFLIGHT_PREFIX, JOB_RECORD_NAME, JOBS_PREFIX, ObjectStore
from deepfake_jobs.store import keys

INFLIGHT_PAGE = 500  # records checked against Redis per round trip


class DataLossScan:
    """Compares the records in object storage with Redis; every method is a no-op without object storage."""

    def __init__(self, redis_client: redis.Redis, objects: ObjectStore | None) -> None:
        self.redis = redis_client
        self.objects = objects

    def lost_inflight_jobs(self, limit: int = 1000) -> list[str]:
        """Jobs recorded in object storage as unfinished (or finished with their webhook unsettled) whose Redis
        record is gone (Redis lost its data)."""
        if self.objects is None:
            return []
        ids = (
            key.removeprefix(INFLIGHT_PREFIX).removesuffix(".json") for key in self.objects.list_keys(INFLIGHT_PREFIX)
        )
        return self._missing_from_redis(ids, limit)

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
        return self._missing_from_redis(ids, limit)

    def redis_is_new(self) -> bool:
        """True once per Redis data set: the first call after Redis started empty (first start, or it lost its
        data). Recovery then rebuilds from object storage what only Redis indexed (listings, tenants)."""
        return bool(self.redis.set(keys.EPOCH_KEY, utcnow().isoformat(), nx=True))

    def _missing_from_redis(self, ids: Iterable[str], limit: int) -> list[str]:
        """The ids without a Redis record, up to `limit`; one round trip per page (the sweep runs often)."""
        lost: list[str] = []
        for page in _pages(ids, INFLIGHT_PAGE):
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in page:
                    pipe.exists(keys.job_key(job_id))
                known = pipe.execute()
            lost.extend(job_id for job_id, exists in zip(page, known, strict=True) if not exists)
            if len(lost) >= limit:
                return lost[:limit]
        return lost


def _pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while page := list(islice(iterator, size)):
        yield page

"""What every request handler shares: settings, the job store, object storage, tenants and admission control.

One `GatewayContext` per process, built in the app's lifespan and used by both the REST routes and the
gRPC servicer, so that the two faces of the API cannot drift apart.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
import urllib3.exceptions
from deepfake_jobs.storage import ObjectStore
from deepfake_jobs.store import JobStore
from deepfake_jobs.tenants import Tenant, TenantRegistry
from minio.error import MinioException

from deepfake_gateway.problems import ProblemCode, ProblemError
from deepfake_gateway.ratelimit import ConcurrencyQuota, RateDecision, RateLimiter, Reservation
from deepfake_gateway.settings import GatewaySettings

# Failures of a backing service: answered 503 (retry later), never 500, and never with the raw error text.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, MinioException, urllib3.exceptions.HTTPError)
DEPENDENCY_RETRY_AFTER_S = 5
log = logging.getLogger(__name__)


def dependency_problem(error: Exception) -> ProblemError:
    service = "Redis" if isinstance(error, redis.RedisError) else "object storage"
    return ProblemError(
        ProblemCode.NOT_READY,
        f"{service} is unavailable right now; retry in a few seconds.",
        retry_after_s=DEPENDENCY_RETRY_AFTER_S,
    )


def _restore_tenants(tenants: TenantRegistry) -> None:
    """Tenants Redis lost (a restart without persistence) come back from object storage before the first request;
    a backing service down at start only delays this to the worker's recovery sweep."""
    try:
        restored = tenants.restore_from_objects()
    except DEPENDENCY_ERRORS as error:
        log.warning("could not restore tenants from object storage at start: %r", error)
        return
    if restored:
        log.warning("tenants restored into Redis from object storage: %s", restored)


@dataclass
class Backpressure:
    """Refuses new jobs while the first queue is deeper than `max_queue_depth` (read at most every `cache_s`)."""

    store: JobStore
    settings: GatewaySettings
    _depth: int = 0
    _read_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queue_depth(self) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < self.settings.queue_depth_cache_s:
                return self._depth
        depth = self.store.queue_depth(self.settings.queue_preprocess)
        with self._lock:
            self._depth, self._read_at = depth, now
        return depth

    def check(self) -> None:
        depth = self.queue_depth()
        if depth >= self.settings.max_queue_depth:
            raise ProblemError(
                ProblemCode.OVERLOADED,
                f"The job queue holds {depth} jobs (limit {self.settings.max_queue_depth}); "
                f"retry in {self.settings.overload_retry_after_s} s.",
                retry_after_s=self.settings.overload_retry_after_s,
            )


@dataclass
class GatewayContext:
    settings: GatewaySettings
    store: JobStore
    objects: ObjectStore
    tenants: TenantRegistry
    rate_limiter: RateLimiter
    quota: ConcurrencyQuota
    backpressure: Backpressure
    # Uploads block a thread for as long as the client sends; a pool of their own keeps them from starving
    # the shared thread pool that every other request's Redis calls go through.
    upload_executor: ThreadPoolExecutor

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> GatewayContext:
        objects = ObjectStore(settings)
        store = JobStore.from_settings(settings, objects)
        tenants = TenantRegistry.from_file(
            settings.tenants_file, redis=store.redis, cache_ttl_s=settings.tenant_cache_ttl_s, objects=objects
        )
        _restore_tenants(tenants)
        return cls(
            settings=settings,
            store=store,
            objects=objects,
            tenants=tenants,
            rate_limiter=RateLimiter(store.redis, settings.rate_limit_window_s),
            quota=ConcurrencyQuota(store.redis, settings.quota_reservation_ttl_s),
            backpressure=Backpressure(store, settings),
            upload_executor=ThreadPoolExecutor(settings.upload_threads, thread_name_prefix="upload"),
        )

    def close(self) -> None:
        self.upload_executor.shutdown(wait=False, cancel_futures=True)
        self.store.redis.close()

    # --- admission, in the order a request meets it ---

    def admit_request(self, tenant: Tenant) -> RateDecision:
        """Count one request against the tenant's rate limit; a 429 problem when it is used up."""
        decision = self.rate_limiter.hit(tenant.id, tenant.rate_limit_per_minute)
        if not decision.admitted:
            raise ProblemError(
                ProblemCode.RATE_LIMITED,
                f"More than {tenant.rate_limit_per_minute} requests in {self.settings.rate_limit_window_s} s; "
                f"retry after {decision.retry_after_s:.1f} s.",
                retry_after_s=decision.retry_after_s,
                headers=decision.headers(),
            )
        return decision

    def admit_job(self, tenant: Tenant) -> Reservation:
        """Backpressure, then the tenant's concurrent-job quota; the reservation must be released."""
        self.backpressure.check()
        reservation, in_flight = self.quota.reserve(tenant.id, tenant.max_concurrent_jobs)
        if reservation is None:
            raise ProblemError(
                ProblemCode.CONCURRENCY_LIMIT,
                f"{in_flight} of your jobs are queued or processing (limit {tenant.max_concurrent_jobs}); "
                "wait for one to finish or cancel one.",
                retry_after_s=self.settings.overload_retry_after_s,
            )
        return reservation

    def confirm_job(self, tenant: Tenant, reservation: Reservation) -> None:
        """The quota again, right before the job is created: an upload may have outlived its reservation."""
        admitted, in_flight = self.quota.confirm(reservation, tenant.max_concurrent_jobs)
        if not admitted:
            raise ProblemError(
                ProblemCode.CONCURRENCY_LIMIT,
                f"{in_flight} of your jobs are queued or processing (limit {tenant.max_concurrent_jobs}); the upload "
                "took longer than its quota slot lasts and the quota is full now: wait for a job to finish, then "
                "send it again.",
                retry_after_s=self.settings.overload_retry_after_s,
            )

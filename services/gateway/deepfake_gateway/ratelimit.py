"""Per-tenant admission control in Redis: a sliding-window request rate limit and a concurrent-job quota.

Both are single Lua scripts, so that any number of gateway replicas share one exact count without races;
both take the clock from Redis (`TIME`) so that replicas with skewed clocks agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis
from deepfake_jobs.models import JobStatus
from deepfake_jobs.store.keys import tenant_index

RATE_KEY_PREFIX = "deepfake:ratelimit:"
RESERVATION_KEY_PREFIX = "deepfake:quota-reservations:"

# The time in microseconds, from Redis itself.
_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Sliding window log: one sorted-set member per admitted request, scored by its time in microseconds.
# Returns {admitted (0/1), remaining, retry_after_us}.
_SLIDING_WINDOW = (
    """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
"""
    + _NOW_US
    + """
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_us)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window_us / 1000))
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window_us - now}
"""
)

# Jobs in flight = queued + processing (the store's status indexes) + reservations of submissions that passed
# admission but have not created their job yet (expired reservations dropped first).
_IN_FLIGHT = (
    """
local reservations = KEYS[3]
local limit = tonumber(ARGV[1])
local ttl_us = tonumber(ARGV[2])
"""
    + _NOW_US
    + """
redis.call('ZREMRANGEBYSCORE', reservations, '-inf', now - ttl_us)
local in_flight = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', reservations)
"""
)

# Below the limit: hold a reservation (token ARGV[3]) for this submission. Returns {admitted (0/1), in_flight}.
_RESERVE_BELOW_LIMIT = """
if in_flight >= limit then
  return {0, in_flight}
end
redis.call('ZADD', reservations, now, ARGV[3])
redis.call('PEXPIRE', reservations, math.ceil(ttl_us / 1000))
return {1, in_flight + 1}
"""

# At submission: admitted while the tenant is below its limit.
_CONCURRENCY = _IN_FLIGHT + _RESERVE_BELOW_LIMIT

# At admission (the job record is about to be created): a reservation still held counts already and is admitted;
# one that expired meanwhile (an upload slower than the reservation's lifetime) must pass the limit again.
_CONFIRM = (
    _IN_FLIGHT
    + """
if redis.call('ZSCORE', reservations, ARGV[3]) then
  redis.call('ZADD', reservations, now, ARGV[3])
  return {1, in_flight}
end
"""
    + _RESERVE_BELOW_LIMIT
)


@dataclass(frozen=True)
class RateDecision:
    admitted: bool
    limit: int
    remaining: int
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """The conventional RateLimit headers, sent on every authenticated response."""
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}


class RateLimiter:
    """At most `limit` requests per tenant in any window of `window_s` seconds (exact, not bucketed)."""

    def __init__(self, client: redis.Redis, window_s: int) -> None:
        self._script = client.register_script(_SLIDING_WINDOW)
        self.window_s = window_s

    def hit(self, tenant_id: str, limit: int) -> RateDecision:
        admitted, remaining, retry_us = self._script(
            keys=[RATE_KEY_PREFIX + tenant_id], args=[limit, self.window_s * 1_000_000, uuid.uuid4().hex]
        )
        return RateDecision(bool(admitted), limit, int(remaining), max(0.0, int(retry_us) / 1_000_000))


@dataclass(frozen=True)
class Reservation:
    """A slot of a tenant's concurrent-job quota, held from admission until the job record exists."""

    tenant_id: str
    token: str


class ConcurrencyQuota:
    """Admits a new job only while the tenant has fewer than its maximum jobs queued or processing."""

    def __init__(self, client: redis.Redis, reservation_ttl_s: float) -> None:
        """`reservation_ttl_s` (settings.quota_reservation_ttl_s): a reservation not turned into a job within this
        (a crashed request, a slow upload) stops counting."""
        self._client = client
        self._script = client.register_script(_CONCURRENCY)
        self._confirm = client.register_script(_CONFIRM)
        self.reservation_ttl_us = int(reservation_ttl_s * 1_000_000)

    @staticmethod
    def _keys(tenant_id: str) -> list[str]:
        return [
            tenant_index(tenant_id, JobStatus.QUEUED),
            tenant_index(tenant_id, JobStatus.PROCESSING),
            RESERVATION_KEY_PREFIX + tenant_id,
        ]

    def reserve(self, tenant_id: str, limit: int) -> tuple[Reservation | None, int]:
        """A reservation (None when the quota is full) and the tenant's jobs in flight counting it."""
        token = uuid.uuid4().hex
        admitted, in_flight = self._script(keys=self._keys(tenant_id), args=[limit, self.reservation_ttl_us, token])
        return (Reservation(tenant_id, token) if admitted else None), int(in_flight)

    def confirm(self, reservation: Reservation, limit: int) -> tuple[bool, int]:
        """Whether the reservation still admits a job now (it expired during a slow upload: checked again)."""
        args = [limit, self.reservation_ttl_us, reservation.token]
        admitted, in_flight = self._confirm(keys=self._keys(reservation.tenant_id), args=args)
        return bool(admitted), int(in_flight)

    def release(self, reservation: Reservation) -> None:
        """Drop the reservation once the job is created (it now counts as queued) or was not created."""
        self._client.zrem(RESERVATION_KEY_PREFIX + reservation.tenant_id, reservation.token)

"""Which errors a stage retries and which end its job: one classification for the stage runner and the task base.

Transient errors are the infrastructure's (Redis, object storage, the network), worth another try after a pause;
`StageFailed` is the job's own, final, with a stable code the client can act on.
"""

from __future__ import annotations

import redis
import urllib3
from deepfake_jobs.safe_fetch import FetchError
from minio.error import S3Error, ServerError

# Errors of the infrastructure, not of the job: worth another try after a pause.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    urllib3.exceptions.HTTPError,
    ServerError,
    ConnectionError,
    TimeoutError,
)
TRANSIENT_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})


class StageFailed(Exception):
    """The job cannot go on, for a reason the client can act on (`code` is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def is_transient(error: BaseException) -> bool:
    """Whether `error` is the infrastructure's and passes: S3 codes that say so, fetches that may succeed later,
    and lost connections to Redis, S3 or the network."""
    if isinstance(error, S3Error):
        return error.code in TRANSIENT_S3_CODES
    if isinstance(error, FetchError):
        return error.transient
    return isinstance(error, TRANSIENT_ERRORS)

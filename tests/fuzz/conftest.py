"""Fixtures of the fuzz tests: the service fixtures (real Redis, S3, Celery workers, gateway) reused from
tests/service for the schemathesis run, and the example counts written at the end of the session."""

from __future__ import annotations

import pytest

from tests.fuzz.budget import counts_file, write_counts
from tests.service.conftest import (  # noqa: F401 - fixtures the schemathesis test needs
    celery_worker,
    gateway,
    http_server,
    object_store,
    platform_settings,
    plumbing_model,
    redis_server,
    s3_server,
    service_env,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = counts_file()
    if path is not None:
        write_counts(path)

"""Fixtures of the fuzz tests: the example counts written at the end of the session. The schemathesis run's
gateway, workers, Redis and S3 come from the shared tests/stack plugin."""

from __future__ import annotations

import pytest

from tests.fuzz.budget import counts_file, write_counts


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = counts_file()
    if path is not None:
        write_counts(path)

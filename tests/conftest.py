"""Session-wide fixtures: the fetched real media, scratch space, and the local service stack (the tests/stack
plugin, registered here once so that every test directory shares one stack per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.media import ensure_media

pytest_plugins = ["tests.stack.fixtures"]


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return ensure_media()

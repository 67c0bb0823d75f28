"""Session-wide fixtures: the fetched real media, and scratch space."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.media import ensure_media


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return ensure_media()

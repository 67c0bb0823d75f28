"""Worker configuration: the platform's settings plus what only the Celery workers need."""

from __future__ import annotations

from functools import lru_cache

from deepfake_jobs.settings import PlatformSettings
from pydantic import Field


class WorkerSettings(PlatformSettings):
    metrics_port: int = Field(
        default=9808, ge=0, le=65535, description="Port of the worker's /metrics (all its processes); 0 = off."
    )
    metrics_host: str = "0.0.0.0"
    progress_interval_s: float = Field(
        default=0.5, ge=0, description="Least time between two progress writes of one stage (Redis load)."
    )
    retention_interval_s: int = Field(default=6 * 3600, ge=60, description="How often beat runs retention.")


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()

"""Worker configuration: the platform's settings plus what only the Celery workers need."""

from __future__ import annotations

from functools import lru_cache

from deepfake_jobs.settings import PlatformSettings
from pydantic import Field, model_validator


class WorkerSettings(PlatformSettings):
    metrics_port: int = Field(
        default=9808, ge=0, le=65535, description="Port of the worker's /metrics (all its processes); 0 = off."
    )
    metrics_host: str = "0.0.0.0"
    progress_interval_s: float = Field(
        default=0.5, ge=0, description="Least time between two progress writes of one stage (Redis load)."
    )
    retention_interval_s: int = Field(default=6 * 3600, ge=60, description="How often beat runs retention.")
    stall_after_s: int = Field(
        default=900,
        ge=60,
        description="An unfinished job whose record has not changed for this long is stalled (its broker message "
        "was lost: Redis restarted, a node vanished); the sweeper re-drives its chain. Keep it above "
        "job_time_limit_s, the longest a stage may run.",
    )
    stall_check_interval_s: int = Field(default=60, ge=5, description="How often beat runs the stalled-job sweep.")
    max_resumes: int = Field(
        default=3, ge=0, description="Re-drives of one stalled job before it fails with the code `stalled`."
    )
    model_wait_s: float = Field(
        default=600.0,
        ge=0,
        description="How long the inference stage waits out an unreachable model server (Triton restarting, a node "
        "drain, a rollout), the job showing progress_stage=waiting_for_model, before it fails with "
        "`service_unavailable`.",
    )
    model_wait_retry_max_s: float = Field(
        default=30.0, gt=0, description="Longest pause between two tries while waiting for the model server."
    )
    inline_stages: bool = Field(
        default=True,
        description="Run a job's next stage in the same task (output handed over in memory, still persisted) "
        "when this worker consumes that stage's queue too; false = one task per stage.",
    )
    cpu_threads_per_process: int = Field(
        default=0,
        ge=0,
        description="onnxruntime intra-op and OpenCV threads of each pool process; 0 = the CPUs divided by the "
        "pool size (an explicit DEEPFAKE_ONNX_THREADS still wins for onnxruntime).",
    )
    preload_models: bool = Field(
        default=True,
        description="Load the model (and the face models) when a pool process starts, not on its first job.",
    )
    process_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="CPU niceness added to pool processes: on a host shared with the gateway, keeps the API "
        "answering while the workers are saturated.",
    )

    @model_validator(mode="after")
    def _stall_outlasts_a_stage(self) -> WorkerSettings:
        if self.stall_after_s <= self.job_time_limit_s:
            raise ValueError(
                f"stall_after_s ({self.stall_after_s}) must exceed job_time_limit_s ({self.job_time_limit_s}): "
                "a job whose stage is still running would otherwise be re-driven beside it."
            )
        return self


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()

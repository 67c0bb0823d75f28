"""Configuration shared by every service of the platform (gateway, workers), read from `DEEPFAKE_*` variables.

One `PlatformSettings` object per process; each service subclasses it with what only it needs
(`deepfake_worker.settings.WorkerSettings`). Unsafe values (placeholder secrets) are refused outside development.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Secrets that ship in examples and charts; a deployment that still uses one is misconfigured.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "minioadmin", "secret", "password", "test"})

Environment = Literal["development", "test", "staging", "production"]


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_", extra="ignore")

    environment: Environment = Field(
        default="development", description="'development' and 'test' accept placeholder secrets; others refuse them."
    )

    # --- Redis: job records, idempotency keys, result cache index, Celery broker ---
    redis_url: str = "redis://localhost:6379/0"
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, description="How long an Idempotency-Key is remembered.")

    # --- object storage (S3 API; MinIO in production) ---
    s3_endpoint: str = Field(default="localhost:9000", description="host:port, or a URL whose scheme sets s3_secure.")
    s3_public_endpoint: str | None = Field(
        default=None, description="Endpoint that clients reach for presigned URLs; unset = s3_endpoint."
    )
    s3_access_key: str = "minioadmin"
    s3_secret_key: SecretStr = SecretStr("minioadmin")
    s3_bucket: str = "deepfake"
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    presigned_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # --- inference backend used by the inference workers ---
    inference_backend: Literal["onnxruntime", "triton"] = "onnxruntime"
    triton_url: str = Field(default="localhost:8001", description="Triton gRPC endpoint, host:port.")
    triton_model_name: str = "deepfake_detector"
    triton_model_version: str = Field(default="", description="Empty = the newest version Triton serves.")

    # --- media ---
    retention_days: int = Field(default=30, ge=1, description="Jobs, media and results older than this are erased.")
    max_media_bytes: int = Field(default=512 * 1024 * 1024, ge=1)

    # --- fetching media from URLs (SSRF rules in deepfake_jobs.safe_fetch) ---
    fetch_connect_timeout_s: float = Field(default=5.0, gt=0)
    fetch_read_timeout_s: float = Field(default=30.0, gt=0)
    fetch_total_timeout_s: float = Field(default=300.0, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    fetch_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or CIDRs reachable despite the SSRF rules, comma-separated (e.g. '127.0.0.1,minio.svc').",
    )

    # --- webhooks ---
    webhook_signing_key: SecretStr = Field(
        default=SecretStr("changeme"), description="Master key; each tenant's signing secret is derived from it."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_period_s: int = Field(default=24 * 3600, ge=0, description="Retries stop this long after the event.")
    webhook_backoff_base_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)

    # --- Celery queues and limits ---
    queue_preprocess: str = "preprocess"
    queue_inference: str = "inference"
    queue_explain: str = "explain"
    queue_webhooks: str = "webhooks"
    job_soft_time_limit_s: int = Field(default=600, ge=1)
    job_time_limit_s: int = Field(default=660, ge=1)
    task_max_retries: int = Field(default=5, ge=0, description="Retries of a stage after a transient error.")
    task_retry_backoff_s: float = Field(default=2.0, gt=0)
    max_queue_depth: int = Field(default=1000, ge=1, description="The gateway refuses new jobs (503) above this.")
    result_cache: bool = Field(default=True, description="Reuse the result of identical media and model version.")

    @field_validator("fetch_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("fetch_allowlist")
    @classmethod
    def _valid_allowlist(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # raises ValueError with the bad entry
        return [entry.lower() for entry in value]

    @model_validator(mode="after")
    def _safe_outside_development(self) -> PlatformSettings:
        if self.job_soft_time_limit_s >= self.job_time_limit_s:
            raise ValueError("job_soft_time_limit_s must be below job_time_limit_s so a stage can clean up.")
        if self.webhook_backoff_base_s > self.webhook_backoff_max_s:
            raise ValueError("webhook_backoff_base_s must not exceed webhook_backoff_max_s.")
        if self.is_development:
            return self
        for name in ("s3_secret_key", "webhook_signing_key"):
            if getattr(self, name).get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"DEEPFAKE_{name.upper()} is a placeholder; set a real secret (environment={self.environment})."
                )
        return self

    @property
    def is_development(self) -> bool:
        return self.environment in ("development", "test")

    @property
    def queues(self) -> tuple[str, ...]:
        return (*self.pipeline_queues, self.queue_webhooks)

    @property
    def pipeline_queues(self) -> tuple[str, ...]:
        """The queues of the detection stages (not webhooks): where a job's messages wait while it is unfinished."""
        return (self.queue_preprocess, self.queue_inference, self.queue_explain)

    @property
    def s3_host(self) -> str:
        return _endpoint_host(self.s3_endpoint)

    @property
    def s3_use_tls(self) -> bool:
        return _endpoint_tls(self.s3_endpoint, self.s3_secure)

    @property
    def s3_public_host(self) -> str:
        return _endpoint_host(self.s3_public_endpoint or self.s3_endpoint)

    @property
    def s3_public_use_tls(self) -> bool:
        return _endpoint_tls(self.s3_public_endpoint or self.s3_endpoint, self.s3_secure)


def _endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).netloc if "://" in endpoint else endpoint.rstrip("/")


def _endpoint_tls(endpoint: str, secure: bool) -> bool:
    return urlsplit(endpoint).scheme == "https" if "://" in endpoint else secure


@lru_cache(maxsize=1)
def get_platform_settings() -> PlatformSettings:
    return PlatformSettings()

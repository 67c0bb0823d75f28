"""Configuration of the gateway: the platform's settings plus what only the public API needs.

Read once from `DEEPFAKE_*` environment variables (`get_settings`); tests and the benchmark start the
gateway as a subprocess with these variables set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from deepfake_jobs.models import MAX_METADATA_BYTES
from deepfake_jobs.settings import PlatformSettings
from pydantic import Field, model_validator


class GatewaySettings(PlatformSettings):
    # --- listening ---
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8000, ge=1, le=65535)
    grpc_enabled: bool = True
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="0 picks a free port (tests).")
    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)

    # --- tenants ---
    tenants_file: Path | None = Field(default=None, description="YAML/JSON tenants (see deepfake_jobs.tenants).")
    tenant_cache_ttl_s: float = Field(default=10.0, ge=0, description="How long a Redis tenant lookup is reused.")

    # --- limits of the public API ---
    rate_limit_window_s: int = Field(default=60, ge=1, description="Window of each tenant's rate_limit_per_minute.")
    max_metadata_bytes: int = Field(
        default=MAX_METADATA_BYTES, ge=0, le=MAX_METADATA_BYTES, description="At most what the job record accepts."
    )
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024, description="JSON bodies (not uploads).")
    upload_threads: int = Field(
        default=16, ge=1, description="Uploads streamed to object storage at once (their own thread pool)."
    )
    upload_stall_timeout_s: float = Field(default=60.0, gt=0, description="An upload sending nothing this long fails.")
    long_poll_max_s: float = Field(default=30.0, ge=0, description="Upper bound of GET /v1/jobs/{id}?wait=S.")
    long_poll_interval_s: float = Field(default=0.1, gt=0, description="How often a long-poll re-reads the job.")
    result_url_expiry_s: int = Field(default=600, ge=60, description="Lifetime of presigned heatmap URLs.")
    upload_url_expiry_s: int = Field(default=900, ge=60, description="Lifetime of presigned upload URLs.")
    quota_reservation_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a quota slot taken when an upload starts counts without a job; the quota is checked "
        "again when the job is created, so a slower upload cannot pass it.",
    )
    overload_retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503 (queue full).")
    queue_depth_cache_s: float = Field(default=0.5, ge=0, description="Backpressure re-reads queue depth this often.")
    readiness_timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> GatewaySettings:
        if self.grpc_enabled and self.grpc_port == self.http_port and self.grpc_port != 0:
            raise ValueError("DEEPFAKE_GRPC_PORT must differ from DEEPFAKE_HTTP_PORT.")
        if self.tenants_file is not None and not self.tenants_file.is_file():
            raise ValueError(f"DEEPFAKE_TENANTS_FILE={self.tenants_file} does not exist.")
        return self


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return GatewaySettings()

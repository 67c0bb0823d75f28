"""Platform and worker settings: read from DEEPFAKE_* variables, unsafe values refused outside development."""

from __future__ import annotations

import pytest
from deepfake_jobs.settings import PlatformSettings
from deepfake_worker.settings import WorkerSettings
from pydantic import ValidationError

REAL_SECRETS = {"s3_secret_key": "a-long-random-s3-secret", "webhook_signing_key": "a-long-random-signing-key"}


@pytest.mark.parametrize("placeholder", ["changeme", "minioadmin", "", "  CHANGEME "])
@pytest.mark.parametrize("field", ["s3_secret_key", "webhook_signing_key"])
def test_placeholder_secrets_are_refused_in_production(field: str, placeholder: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PlatformSettings(environment="production", **{**REAL_SECRETS, field: placeholder})
    assert f"DEEPFAKE_{field.upper()}" in str(caught.value)


def test_real_secrets_pass_in_production_and_placeholders_in_development() -> None:
    assert PlatformSettings(environment="production", **REAL_SECRETS).environment == "production"
    placeholders = {"s3_secret_key": "minioadmin", "webhook_signing_key": "changeme"}
    development = PlatformSettings(environment="development", **placeholders)
    assert development.s3_secret_key.get_secret_value() == "minioadmin"


def test_variables_are_read_with_the_deepfake_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPFAKE_FETCH_ALLOWLIST", "127.0.0.1, media.internal,10.0.0.0/8")
    monkeypatch.setenv("DEEPFAKE_S3_ENDPOINT", "https://minio.example.org:9000")
    monkeypatch.setenv("DEEPFAKE_INFERENCE_BACKEND", "triton")
    monkeypatch.setenv("DEEPFAKE_METRICS_PORT", "9100")
    settings = WorkerSettings()
    assert settings.fetch_allowlist == ["127.0.0.1", "media.internal", "10.0.0.0/8"]
    assert settings.s3_host == "minio.example.org:9000" and settings.s3_use_tls
    assert settings.inference_backend == "triton" and settings.metrics_port == 9100


@pytest.mark.parametrize(
    "values",
    [
        {"fetch_allowlist": ["10.0.0.0/33"]},
        {"job_soft_time_limit_s": 100, "job_time_limit_s": 100},
        {"webhook_backoff_base_s": 100, "webhook_backoff_max_s": 10},
        {"inference_backend": "tensorflow"},
    ],
)
def test_inconsistent_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PlatformSettings(**values)

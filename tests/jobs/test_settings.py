"""Platform settings: unsafe values refused outside development (reading DEEPFAKE_*: tests/worker/test_settings.py)."""

from __future__ import annotations

import pytest
from deepfake_jobs.settings import PlatformSettings
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

"""Signed webhooks: the signature scheme, the events, the backoff schedule (deliveries: tests/worker/test_notify.py)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from deepfake_jobs.models import (
    EventType,
    Job,
    JobStatus,
    MediaRef,
    MediaSourceKind,
)
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.views import WebhookEvent, public_job
from deepfake_jobs.webhooks import (
    backoff_delay,
    build_event,
    compute_signature,
    next_retry_at,
    signature_header,
    tenant_webhook_secret,
    verify_signature,
)

BODY = b'{"id":"evt_1","type":"job.succeeded"}'


# --- signatures -------------------------------------------------------------------------------------------------


def test_a_signature_verifies_only_with_the_same_secret_and_body() -> None:
    header = signature_header("whsec_a", BODY, timestamp=1_700_000_000)
    assert verify_signature("whsec_a", header, BODY, now=1_700_000_010)
    assert not verify_signature("whsec_b", header, BODY, now=1_700_000_010)
    assert not verify_signature("whsec_a", header, BODY + b" ", now=1_700_000_010)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert compute_signature("k", 1_700_000_000, BODY) == expected
    assert signature_header("k", BODY, timestamp=1_700_000_000) == f"t=1700000000,v1={expected}"


def test_stale_or_malformed_headers_are_refused() -> None:
    header = signature_header("k", BODY, timestamp=1_700_000_000)
    assert not verify_signature("k", header, BODY, tolerance_s=300, now=1_700_000_000 + 301)
    for bad in (None, "", "v1=abc", "t=1700000000", "t=notanumber,v1=abc", "garbage"):
        assert not verify_signature("k", bad, BODY, now=1_700_000_000)


def test_any_of_several_signatures_is_enough_during_a_secret_rotation() -> None:
    old = compute_signature("old", 1_700_000_000, BODY)
    new = compute_signature("new", 1_700_000_000, BODY)
    header = f"t=1700000000,v1={old},v1={new}"
    assert verify_signature("old", header, BODY, now=1_700_000_000)
    assert verify_signature("new", header, BODY, now=1_700_000_000)


def test_tenant_secrets_differ_per_tenant_and_follow_the_platform_key() -> None:
    settings = PlatformSettings(webhook_signing_key="key-one")
    assert tenant_webhook_secret(settings, "a") != tenant_webhook_secret(settings, "b")
    assert tenant_webhook_secret(settings, "a") == tenant_webhook_secret(
        PlatformSettings(webhook_signing_key="key-one"), "a"
    )
    assert tenant_webhook_secret(settings, "a") != tenant_webhook_secret(
        PlatformSettings(webhook_signing_key="key-2"), "a"
    )


# --- events and backoff -----------------------------------------------------------------------------------------


def _job(status: JobStatus) -> Job:
    return Job(tenant_id="t", status=status, media=MediaRef(source=MediaSourceKind.UPLOAD))


def test_events_exist_for_succeeded_and_failed_jobs_only_and_have_unique_ids() -> None:
    assert build_event(_job(JobStatus.SUCCEEDED)).type is EventType.JOB_SUCCEEDED
    assert build_event(_job(JobStatus.FAILED)).type is EventType.JOB_FAILED
    ids = {build_event(_job(JobStatus.SUCCEEDED)).id for _ in range(100)}
    assert len(ids) == 100
    for status in (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.CANCELED):
        with pytest.raises(ValueError):
            build_event(_job(status))


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    settings = PlatformSettings(webhook_backoff_base_s=10, webhook_backoff_max_s=300)
    rng = random.Random(5)
    for attempt in range(1, 12):
        capped = min(300, 10 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, settings, rng) for _ in range(50)]
        assert all(capped / 2 <= delay <= capped for delay in delays)
        assert len(set(delays)) > 1, "jitter spreads retries"


def test_retries_stop_when_the_retry_period_is_over() -> None:
    settings = PlatformSettings(webhook_backoff_base_s=10, webhook_backoff_max_s=100, webhook_retry_period_s=600)
    event = WebhookEvent(type=EventType.JOB_SUCCEEDED, job=public_job(_job(JobStatus.SUCCEEDED)))
    assert next_retry_at(event, 1, settings, event.created_at) is not None
    assert next_retry_at(event, 1, settings, event.created_at + timedelta(seconds=599)) is None

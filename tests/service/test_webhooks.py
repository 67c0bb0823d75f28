"""Signed webhooks: the signature scheme, the backoff schedule, and deliveries by real workers to a local receiver."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from deepfake_jobs.models import (
    DeliveryOutcome,
    EventType,
    Job,
    JobStatus,
    MediaRef,
    MediaSourceKind,
)
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.views import WebhookEvent, public_job
from deepfake_jobs.webhooks import (
    SIGNATURE_HEADER,
    backoff_delay,
    build_event,
    compute_signature,
    next_retry_at,
    signature_header,
    tenant_webhook_secret,
    verify_signature,
)

from tests.service.servers import Route

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


# --- deliveries through the workers ----------------------------------------------------------------------------


def _assert_signed(request, settings: PlatformSettings, tenant: str) -> WebhookEvent:  # noqa: ANN001
    secret = tenant_webhook_secret(settings, tenant)
    assert verify_signature(secret, request.headers[SIGNATURE_HEADER], request.body)
    return WebhookEvent.model_validate_json(request.body)


def test_a_failing_receiver_gets_retries_until_it_accepts_and_every_attempt_is_logged(
    submit_upload, wait_for_job, job_store, http_server, platform_settings, tenant_id, short_clip
):
    hook = http_server.add(f"/hooks/{tenant_id}", Route(status=204, fail_first=2))
    job = submit_upload(tenant_id, short_clip, "clip.mp4", callback_url=hook, metadata={"order": "A-1"})
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error

    requests = http_server.wait_for(f"/hooks/{tenant_id}", count=3)
    assert [r.status for r in requests] == [500, 500, 204]
    events = [_assert_signed(r, platform_settings, tenant_id) for r in requests]
    assert len({event.id for event in events}) == 1, "a retry resends the same event"
    assert len({r.headers["Deepfake-Delivery"] for r in requests}) == 3
    event = events[-1]
    assert event.type is EventType.JOB_SUCCEEDED and event.job.id == job.id
    assert event.job.options.metadata == {"order": "A-1"} and event.job.verdict == done.verdict

    log = _wait_for_deliveries(job_store, job.id, 3)
    assert [a.outcome for a in log] == [DeliveryOutcome.RETRYING, DeliveryOutcome.RETRYING, DeliveryOutcome.DELIVERED]
    assert [a.attempt for a in log] == [1, 2, 3] and [a.status_code for a in log] == [500, 500, 204]
    assert all(a.next_retry_at is not None and a.next_retry_at > a.at for a in log[:2])
    assert log[-1].next_retry_at is None and job_store.event_for(job.id).id == event.id


def test_retries_go_on_past_celerys_default_of_three_until_the_receiver_accepts(
    submit_upload, wait_for_job, job_store, http_server, tenant_id
):
    """The retry budget is the retry period (60 s here), not Celery's default count: a receiver failing 6 times
    gets its 7th attempt (the probe saw events give up after 4, their log still saying `retrying`)."""
    path = f"/hooks/stubborn-{tenant_id}"
    hook = http_server.add(path, Route(status=204, fail_first=6))
    job = submit_upload(tenant_id, b"not media: fails fast", "x.jpg", callback_url=hook)
    assert wait_for_job(job.id).status is JobStatus.FAILED
    requests = http_server.wait_for(path, count=7, timeout_s=90)
    assert [r.status for r in requests] == [500] * 6 + [204]
    assert len({r.headers["Deepfake-Event-Id"] for r in requests}) == 1
    log = _wait_for_deliveries(job_store, job.id, 7)
    assert [a.outcome for a in log] == [DeliveryOutcome.RETRYING] * 6 + [DeliveryOutcome.DELIVERED]


def test_a_failed_job_sends_a_job_failed_event(submit_upload, wait_for_job, http_server, platform_settings, tenant_id):
    hook = http_server.add(f"/hooks/failed-{tenant_id}", Route(status=200))
    job = submit_upload(tenant_id, b"this is not a video", "notes.mp4", callback_url=hook)
    assert wait_for_job(job.id).status is JobStatus.FAILED
    (request,) = http_server.wait_for(f"/hooks/failed-{tenant_id}")
    event = _assert_signed(request, platform_settings, tenant_id)
    assert event.type is EventType.JOB_FAILED and event.job.error is not None
    assert request.headers["Deepfake-Event"] == "job.failed" and request.headers["Deepfake-Event-Id"] == event.id


def test_a_callback_to_a_private_address_is_refused_at_delivery_and_not_retried(
    submit_upload, wait_for_job, job_store, tenant_id, short_clip
):
    job = submit_upload(tenant_id, short_clip, "clip.mp4", callback_url="http://169.254.169.254/latest/hook")
    assert wait_for_job(job.id).status is JobStatus.SUCCEEDED
    (attempt,) = _wait_for_deliveries(job_store, job.id, 1)
    assert attempt.outcome is DeliveryOutcome.REFUSED and attempt.status_code is None
    assert "metadata" in attempt.error and attempt.next_retry_at is None


def test_a_manual_redelivery_sends_the_same_event_once_more(
    submit_upload, wait_for_job, job_store, http_server, tenant_id, short_clip
):
    from deepfake_jobs.dispatch import redeliver_webhook

    path = f"/hooks/again-{tenant_id}"
    hook = http_server.add(path, Route(status=200))
    job = submit_upload(tenant_id, short_clip, "clip.mp4", callback_url=hook)
    wait_for_job(job.id)
    first = http_server.wait_for(path, count=1)
    redeliver_webhook(job_store.get(job.id))
    second = http_server.wait_for(path, count=2)
    assert json.loads(first[0].body)["id"] == json.loads(second[1].body)["id"]
    log = _wait_for_deliveries(job_store, job.id, 2)
    assert [a.outcome for a in log] == [DeliveryOutcome.DELIVERED, DeliveryOutcome.DELIVERED]


def _wait_for_deliveries(job_store, job_id: str, count: int, timeout_s: float = 60.0):  # noqa: ANN001, ANN202
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = job_store.deliveries(job_id)
        if len(log) >= count:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{count} delivery attempts of job {job_id} not logged in {timeout_s} s: {log}")

"""The notify stage: signed webhooks delivered by real workers to a local receiver, retried until it accepts."""

from __future__ import annotations

import json

from deepfake_jobs.models import DeliveryOutcome, EventType, JobStatus
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.views import WebhookEvent
from deepfake_jobs.webhooks import SIGNATURE_HEADER, tenant_webhook_secret, verify_signature

from tests.stack.servers import Route


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

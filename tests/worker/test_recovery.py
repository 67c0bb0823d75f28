"""Stalled jobs: a job whose broker messages were lost is re-driven by the sweeper and finishes from its stored
outputs; a job that keeps stalling fails with the code `stalled` and its webhook says so; a stale job that may
still be waiting in a busy queue is left alone until the hard bound. Real Redis, S3 and Celery workers."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from deepfake_jobs.dispatch import app, pipeline
from deepfake_jobs.models import Job, JobStatus, Stage, utcnow
from deepfake_jobs.queues import (
    PRIORITY_SEP,
    TASK_EXPLAIN,
    TASK_FETCH,
    TASK_INFERENCE,
    TASK_PREPROCESS,
    TASK_RESUME_STALLED,
)
from deepfake_jobs.webhooks import tenant_webhook_secret
from deepfake_worker.recovery import HARD_STALL_FACTOR, STALLED_CODE, sweep_stalled

from tests.stack.servers import Route


@pytest.fixture(autouse=True)
def no_leftover_jobs(job_store, object_store) -> None:  # noqa: ANN001
    """Sweeps here run as if much time had passed, so they would also re-drive every job earlier tests left
    unfinished (queued on purpose, or erased from Redis only) and queue those ahead of this test's job."""
    from deepfake_jobs.storage import inflight_key
    from deepfake_jobs.store.errors import InvalidTransition, JobNotFound

    for job_id in job_store.not_updated_since(utcnow() + timedelta(days=1), limit=100_000):
        try:
            job_store.update(job_id, status=JobStatus.CANCELED)
        except (InvalidTransition, JobNotFound):
            job_store.forget_active(job_id)
    for job_id in job_store.lost_inflight_jobs(limit=100_000):
        object_store.delete(inflight_key(job_id))


def _sweep_later(settings, seconds: float) -> None:  # noqa: ANN001
    """Run the real beat task on the workers, as if `seconds` had passed."""
    moment = (utcnow() + timedelta(seconds=seconds)).isoformat()
    app.signature(TASK_RESUME_STALLED, kwargs={"now": moment}, queue=settings.queue_webhooks).apply_async()


def test_the_active_index_holds_exactly_the_unfinished_jobs(
    submit_upload, job_store, object_store, tenant_id, photo_bytes
):
    from deepfake_jobs.retention import erase_job

    later = utcnow() + timedelta(hours=1)
    queued = submit_upload(tenant_id, photo_bytes + b"active-1", "a.jpg", dispatch=False)
    finished = submit_upload(tenant_id, photo_bytes + b"active-2", "b.jpg", dispatch=False)
    erased = submit_upload(tenant_id, photo_bytes + b"active-3", "c.jpg", dispatch=False)
    job_store.update(finished.id, status=JobStatus.CANCELED)
    erase_job(job_store, object_store, erased.id)  # as DELETE does: nothing left for a sweep to rebuild

    stale = set(job_store.not_updated_since(later, limit=100_000))
    assert queued.id in stale
    assert finished.id not in stale and erased.id not in stale
    assert queued.id not in job_store.not_updated_since(utcnow() - timedelta(minutes=1), limit=100_000)
    job_store.update(queued.id, status=JobStatus.CANCELED)


def test_a_job_whose_messages_were_lost_is_resumed_from_its_stored_outputs(
    submit_upload, wait_for_job, job_store, platform_settings, tenant_id, short_clip
):
    job = submit_upload(tenant_id, short_clip + b"lost" + tenant_id.encode(), "clip.mp4", dispatch=False)
    # Fetch and preprocess ran; then the broker lost the rest of the chain (e.g. Redis restarted empty).
    pipeline(job, stages=(TASK_FETCH, TASK_PREPROCESS)).apply_async()

    def preprocessed(current: Job) -> bool:
        return any(run.stage is Stage.PREPROCESS and run.duration_ms is not None for run in current.stage_runs)

    stuck = wait_for_job(job.id, until=preprocessed)
    assert stuck.status is JobStatus.PROCESSING

    _sweep_later(platform_settings, HARD_STALL_FACTOR * platform_settings.stall_after_s + 60)
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    runs = [(run.stage, run.reused) for run in done.stage_runs]
    assert runs[2:] == [(Stage.FETCH, True), (Stage.PREPROCESS, True), (Stage.INFERENCE, False),
                        (Stage.EXPLAIN, False)], "the resumed chain redid finished work"  # fmt: skip
    assert job.id not in job_store.not_updated_since(utcnow() + timedelta(days=1), limit=100_000)


def test_a_job_that_keeps_stalling_fails_with_a_clear_code_and_a_signed_webhook(
    submit_upload, wait_for_job, job_store, platform_settings, http_server, tenant_id, photo_bytes
):
    from deepfake_client import verify_signature
    from deepfake_client.signing import SIGNATURE_HEADER

    path = f"/stalled/{tenant_id}"
    hook = http_server.add(path, Route(status=204))
    job = submit_upload(tenant_id, photo_bytes + b"stalled", "p.jpg", dispatch=False, callback_url=hook)
    for _ in range(platform_settings.max_resumes):  # three earlier re-drives that did not help
        job_store.count_resume(job.id)

    _sweep_later(platform_settings, HARD_STALL_FACTOR * platform_settings.stall_after_s + 60)
    failed = wait_for_job(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error.code == STALLED_CODE and "submit it again" in failed.error.message

    (delivery,) = http_server.wait_for(path, 1, method="POST")
    secret = tenant_webhook_secret(platform_settings, tenant_id)
    assert verify_signature(secret, dict(delivery.headers)[SIGNATURE_HEADER], delivery.body)
    event = json.loads(delivery.body)
    assert event["type"] == "job.failed" and event["job"]["error"]["code"] == STALLED_CODE


def test_a_webhook_whose_notify_message_was_lost_is_sent_again(
    submit_upload, wait_for_job, job_store, platform_settings, http_server, tenant_id, photo_bytes
):
    from deepfake_client import verify_signature
    from deepfake_client.signing import SIGNATURE_HEADER

    path = f"/owed/{tenant_id}"
    hook = http_server.add(path, Route(status=204))
    job = submit_upload(tenant_id, photo_bytes + b"owed", "p.jpg", dispatch=False, callback_url=hook, explain=False)
    # Every stage ran, but the notify message was lost.
    pipeline(job, stages=(TASK_FETCH, TASK_PREPROCESS, TASK_INFERENCE, TASK_EXPLAIN)).apply_async()
    assert wait_for_job(job.id).status is JobStatus.SUCCEEDED
    assert job.id in job_store.webhooks_overdue(utcnow() + timedelta(days=1), limit=100_000)
    assert http_server.received(path) == []

    _sweep_later(platform_settings, platform_settings.stall_after_s + 60)
    (delivery,) = http_server.wait_for(path, 1, method="POST")
    secret = tenant_webhook_secret(platform_settings, tenant_id)
    assert verify_signature(secret, dict(delivery.headers)[SIGNATURE_HEADER], delivery.body)
    assert json.loads(delivery.body)["job"]["id"] == job.id

    def settled() -> bool:
        return job.id not in job_store.webhooks_overdue(utcnow() + timedelta(days=1), limit=100_000)

    deadline = time.monotonic() + 20
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert settled(), "a delivered webhook is no longer owed"


def test_a_stale_job_is_deferred_while_a_queue_may_still_hold_its_message(
    submit_upload, job_store, platform_settings, tenant_id, photo_bytes
):
    # Queues of their own, so the session's workers neither drain nor fill them.
    settings = platform_settings.model_copy(update={"queue_preprocess": f"stall-test-{tenant_id}"})
    job = submit_upload(tenant_id, photo_bytes + b"deferred", "p.jpg", dispatch=False)
    resumed: list[str] = []
    try:
        job_store.redis.rpush(f"{settings.queue_preprocess}{PRIORITY_SEP}3", "a waiting message")
        assert job_store.queue_depth(settings.queue_preprocess) == 1

        soon = sweep_stalled(job_store, settings, resume=lambda j: resumed.append(j.id), give_up=lambda j: None,
                             now=utcnow() + timedelta(seconds=settings.stall_after_s + 5), limit=100_000)  # fmt: skip
        assert job.id in soon.deferred and job.id not in resumed

        late = sweep_stalled(job_store, settings, resume=lambda j: resumed.append(j.id), give_up=lambda j: None,
                             now=utcnow() + timedelta(seconds=HARD_STALL_FACTOR * settings.stall_after_s + 5),
                             limit=100_000)  # fmt: skip
        assert job.id in late.resumed and resumed.count(job.id) == 1

        # Re-driving restarted its stall clock: the same sweep a moment later leaves it alone.
        again = sweep_stalled(job_store, settings, resume=lambda j: resumed.append(j.id), give_up=lambda j: None,
                              now=utcnow() + timedelta(seconds=settings.stall_after_s // 2), limit=100_000)  # fmt: skip
        assert job.id not in again.resumed + again.deferred + again.failed
    finally:
        job_store.redis.delete(f"{settings.queue_preprocess}{PRIORITY_SEP}3")
        job_store.update(job.id, status=JobStatus.CANCELED)


def test_an_unfinished_job_lost_with_the_redis_data_is_rebuilt_from_object_storage_and_finishes(
    submit_upload, wait_for_job, job_store, object_store, platform_settings, tenant_id, short_clip
):
    from deepfake_jobs.storage import inflight_key, job_record_key

    job = submit_upload(tenant_id, short_clip + b"redis-lost" + tenant_id.encode(), "clip.mp4", dispatch=False)
    assert object_store.exists(inflight_key(job.id)), "an unfinished job is recorded in object storage"
    # Redis loses the job: its record, its place among the unfinished jobs, and (dispatch=False) any message.
    job_store.redis.delete(f"deepfake:job:{job.id}")
    job_store.forget_active(job.id)
    assert job_store.redis.exists(f"deepfake:job:{job.id}") == 0
    assert job.id in job_store.lost_inflight_jobs(limit=100_000)

    _sweep_later(platform_settings, HARD_STALL_FACTOR * platform_settings.stall_after_s + 60)
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert not object_store.exists(inflight_key(job.id)), "a finished job leaves only its final record"
    assert object_store.exists(job_record_key(job.id))
    assert job.id not in job_store.lost_inflight_jobs(limit=100_000)


def test_a_webhook_owed_when_redis_lost_its_data_is_sent_with_its_event_id(
    submit_upload, wait_for_job, job_store, object_store, platform_settings, http_server, tenant_id, photo_bytes
):
    from deepfake_jobs.storage import inflight_key
    from deepfake_jobs.webhooks import event_id_for

    path = f"/owed-lost/{tenant_id}"
    hook = http_server.add(path, Route(status=204))
    job = submit_upload(tenant_id, photo_bytes + b"owed2", "p.jpg", dispatch=False, callback_url=hook, explain=False)
    pipeline(job, stages=(TASK_FETCH, TASK_PREPROCESS, TASK_INFERENCE, TASK_EXPLAIN)).apply_async()  # no notify
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert object_store.exists(inflight_key(job.id)), "kept while its webhook is owed"
    # Redis loses everything about the job: its record and the owed-webhook entry.
    job_store.redis.delete(f"deepfake:job:{job.id}")
    job_store.redis.zrem("deepfake:webhooks:owed", job.id)
    assert job.id in job_store.lost_inflight_jobs(limit=100_000)

    _sweep_later(platform_settings, platform_settings.stall_after_s + 60)
    (delivery,) = http_server.wait_for(path, 1, method="POST")
    event = json.loads(delivery.body)
    assert event["job"]["id"] == job.id and event["id"] == event_id_for(done)

    deadline = time.monotonic() + 20
    while object_store.exists(inflight_key(job.id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not object_store.exists(inflight_key(job.id)), "a settled webhook leaves nothing to rebuild"


def test_a_job_whose_record_cannot_be_written_to_object_storage_is_not_created(job_store, platform_settings, tenant_id):
    from deepfake_jobs.models import MediaRef, MediaSourceKind
    from deepfake_jobs.storage import ObjectStore
    from deepfake_jobs.store import JobStore
    from minio.error import S3Error

    missing_bucket = ObjectStore(platform_settings.model_copy(update={"s3_bucket": f"no-such-{tenant_id}"}))
    store = JobStore(job_store.redis, missing_bucket, platform_settings)
    job = Job(tenant_id=tenant_id, media=MediaRef(source=MediaSourceKind.URL, url="https://example.com/a.jpg"))
    with pytest.raises(S3Error):
        store.create(job)
    assert job_store.get(job.id) is None and job_store.count(tenant_id) == 0
    assert job.id not in job_store.not_updated_since(utcnow() + timedelta(days=1), limit=100_000)


def test_stall_after_must_outlast_the_hard_time_limit_of_a_stage() -> None:
    from deepfake_worker.settings import WorkerSettings
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="stall_after_s"):
        WorkerSettings(job_soft_time_limit_s=500, job_time_limit_s=1000, stall_after_s=900)
    assert WorkerSettings(job_soft_time_limit_s=500, job_time_limit_s=600, stall_after_s=900).stall_after_s == 900

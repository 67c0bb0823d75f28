"""The job store on a real Redis (and S3 for the mirrored records): state machine, tenancy, listing, indexes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from deepfake_jobs.models import (
    DeliveryAttempt,
    DeliveryOutcome,
    EventType,
    Job,
    JobError,
    JobStatus,
    MediaRef,
    MediaSourceKind,
    Stage,
    StageRun,
    utcnow,
)
from deepfake_jobs.storage import inflight_key, job_record_key
from deepfake_jobs.store.errors import IdempotencyConflict, InvalidTransition, JobExists, JobNotFound
from deepfake_jobs.webhooks import build_event


def new_job(tenant: str, **fields: object) -> Job:
    return Job(tenant_id=tenant, media=MediaRef(source=MediaSourceKind.UPLOAD), **fields)


def test_jobs_are_tenant_scoped(job_store, tenant_id):
    job = job_store.create(new_job(tenant_id))
    assert job_store.get(job.id, tenant_id) == job
    assert job_store.get(job.id, "someone-else") is None
    assert job_store.get("no-such-job") is None
    with pytest.raises(JobNotFound):
        job_store.require(job.id, "someone-else")
    with pytest.raises(JobExists):
        job_store.create(job)


def test_the_state_machine_moves_forward_and_stamps_times(job_store, tenant_id):
    job = job_store.create(new_job(tenant_id))
    processing = job_store.update(job.id, status=JobStatus.PROCESSING, stage=Stage.PREPROCESS, progress=20)
    assert processing.started_at is not None and processing.finished_at is None
    assert processing.updated_at >= job.updated_at
    with pytest.raises(InvalidTransition):
        job_store.update(job.id, status=JobStatus.QUEUED)
    done = job_store.update(job.id, status=JobStatus.SUCCEEDED, progress=100)
    assert done.finished_at is not None and done.started_at == processing.started_at


@pytest.mark.parametrize("final", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED])
def test_a_finished_job_never_changes_again(job_store, tenant_id, final):
    job = job_store.create(new_job(tenant_id))
    job_store.update(job.id, status=final)
    for change in (
        {"status": JobStatus.PROCESSING},
        {"status": JobStatus.SUCCEEDED},
        {"progress": 50},
        {"error": JobError(code="x", message="y")},
    ):
        with pytest.raises(InvalidTransition) as caught:
            job_store.update(job.id, **change)
        assert caught.value.job.status is final
    assert job_store.get(job.id).status is final


def test_a_late_worker_cannot_overwrite_a_cancel(job_store, tenant_id):
    job = job_store.create(new_job(tenant_id))
    job_store.update(job.id, status=JobStatus.PROCESSING, stage=Stage.INFERENCE)
    canceled = job_store.cancel(job.id, tenant_id)
    assert canceled.status is JobStatus.CANCELED
    with pytest.raises(InvalidTransition):
        job_store.update(job.id, status=JobStatus.SUCCEEDED, result_key="results/x/result.json")
    with pytest.raises(InvalidTransition):
        job_store.cancel(job.id, tenant_id)
    with pytest.raises(JobNotFound):
        job_store.cancel(job.id, "someone-else")


def test_concurrent_modifications_are_all_kept(job_store, tenant_id):
    job = job_store.create(new_job(tenant_id))

    def add_run() -> None:
        for _ in range(10):
            job_store.modify(
                job.id, lambda j: {"stage_runs": [*j.stage_runs, StageRun(stage=Stage.FETCH, started_at=utcnow())]}
            )

    threads = [threading.Thread(target=add_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(job_store.get(job.id).stage_runs) == 40


def test_listing_is_newest_first_with_cursor_pages_and_status_filters(job_store, tenant_id):
    start = utcnow()
    jobs = [job_store.create(new_job(tenant_id, created_at=start + timedelta(seconds=i))) for i in range(7)]
    newest_first = [job.id for job in reversed(jobs)]
    seen, cursor = [], None
    while True:
        page = job_store.list(tenant_id, cursor=cursor, limit=3)
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == newest_first
    job_store.update(jobs[2].id, status=JobStatus.FAILED)
    job_store.update(jobs[5].id, status=JobStatus.PROCESSING)
    assert [j.id for j in job_store.list(tenant_id, status=JobStatus.FAILED).jobs] == [jobs[2].id]
    assert [j.id for j in job_store.list(tenant_id, status=JobStatus.PROCESSING).jobs] == [jobs[5].id]
    assert job_store.count(tenant_id, JobStatus.QUEUED) == 5 and job_store.count(tenant_id) == 7
    assert job_store.list("nobody").jobs == []
    with pytest.raises(ValueError):
        job_store.list(tenant_id, cursor="!!not-a-cursor")


def test_idempotency_keys_bind_one_request_to_one_job(job_store, tenant_id):
    assert not job_store.idempotency_key_used(tenant_id, "key-1")
    assert job_store.claim_idempotency(tenant_id, "key-1", "hash-a", "job-1") == "job-1"
    assert job_store.idempotency_key_used(tenant_id, "key-1")
    assert job_store.claim_idempotency(tenant_id, "key-1", "hash-a", "job-2") == "job-1"
    with pytest.raises(IdempotencyConflict) as caught:
        job_store.claim_idempotency(tenant_id, "key-1", "hash-b", "job-3")
    assert caught.value.job_id == "job-1"
    assert job_store.claim_idempotency("other-tenant", "key-1", "hash-b", "job-4") == "job-4"
    job_store.release_idempotency(tenant_id, "key-1")
    assert job_store.claim_idempotency(tenant_id, "key-1", "hash-b", "job-5") == "job-5"


def test_finished_jobs_are_mirrored_to_object_storage_and_recovered(job_store, object_store, tenant_id):
    running = job_store.create(new_job(tenant_id))
    assert not object_store.exists(job_record_key(running.id))
    done = job_store.update(running.id, status=JobStatus.FAILED, error=JobError(code="corrupt_media", message="m"))
    assert Job.model_validate_json(object_store.get_bytes(job_record_key(done.id))) == done

    job_store.redis.delete(f"deepfake:job:{done.id}")  # Redis lost the record
    assert job_store.get(done.id, tenant_id) == done
    assert job_store.redis.exists(f"deepfake:job:{done.id}")
    assert [j.id for j in job_store.list(tenant_id).jobs] == [done.id]

    unfinished = job_store.create(new_job(tenant_id))
    assert object_store.exists(inflight_key(unfinished.id)) and not object_store.exists(job_record_key(unfinished.id))
    job_store.redis.delete(f"deepfake:job:{unfinished.id}")
    assert job_store.get(unfinished.id) == unfinished  # rebuilt from its in-flight record, as created
    assert not object_store.exists(inflight_key(done.id)), "a finished job's in-flight record is gone"


def test_a_record_mirrored_by_a_late_worker_does_not_bring_an_erased_job_back(job_store, object_store, tenant_id):
    """The worker mirrors a job it just finished while DELETE erases it; whichever lands last, nothing stays."""
    from deepfake_jobs.retention import erase_job

    after = job_store.create(new_job(tenant_id))
    done = job_store.update(after.id, status=JobStatus.CANCELED)
    erase_job(job_store, object_store, done.id)
    job_store.mirror(done)  # the worker's write arrives after the whole erase
    assert not object_store.exists(job_record_key(done.id))
    assert job_store.get(done.id) is None

    during = job_store.create(new_job(tenant_id))
    done = job_store.update(during.id, status=JobStatus.CANCELED)
    job_store.mark_erased(done.id)  # the erase has begun: objects go first, the Redis record last
    object_store.delete(job_record_key(done.id))
    job_store.mirror(done)  # the worker's write lands in between
    assert not object_store.exists(job_record_key(done.id))
    job_store.erase(done.id)
    assert job_store.get(done.id) is None


def test_an_event_stored_with_the_internal_job_is_read_as_the_public_document(job_store, tenant_id):
    """Events written before webhook bodies carried the public job document still load, converted."""
    import json

    job = job_store.create(new_job(tenant_id, status=JobStatus.SUCCEEDED, result_key="results/x/result.json"))
    internal = json.loads(job.model_dump_json())
    legacy = {"id": "evt_legacy", "type": "job.succeeded", "created_at": utcnow().isoformat(), "job": internal}
    job_store.redis.set(f"deepfake:event:{job.id}", json.dumps(legacy))
    event = job_store.event_for(job.id)
    assert event.id == "evt_legacy" and event.job.id == job.id
    body = json.loads(event.body())
    assert "tenant_id" not in body["job"] and "result_key" not in body["job"] and body["job"]["links"]["self"]


def test_result_cache_index_events_and_delivery_log(job_store, tenant_id):
    job_store.remember_result("tenant-a", "ab" * 32, "model:1", "uniform:6|explain=1", "job-a")
    assert job_store.cached_result("tenant-a", "ab" * 32, "model:1", "uniform:6|explain=1") == "job-a"
    assert job_store.cached_result("tenant-a", "ab" * 32, "model:2", "uniform:6|explain=1") is None
    assert job_store.cached_result("tenant-a", "ab" * 32, "model:1", "uniform:6|explain=0") is None
    assert job_store.cached_result("tenant-b", "ab" * 32, "model:1", "uniform:6|explain=1") is None  # per tenant

    job = job_store.create(new_job(tenant_id, status=JobStatus.SUCCEEDED))
    first = job_store.save_event(build_event(job))
    second = job_store.save_event(build_event(job))
    assert second.id == first.id == job_store.event_for(job.id).id
    assert first.type is EventType.JOB_SUCCEEDED and job_store.event_for(job.id) == first
    assert "tenant_id" not in job_store.redis.get(f"deepfake:event:{job.id}"), "the stored event is the public one"
    for outcome in (DeliveryOutcome.RETRYING, DeliveryOutcome.DELIVERED):
        number = job_store.next_attempt_number(first.id)
        job_store.record_delivery(
            job.id, DeliveryAttempt(event_id=first.id, attempt=number, url="http://x/", outcome=outcome)
        )
    assert [(a.attempt, a.outcome) for a in job_store.deliveries(job.id)] == [
        (1, DeliveryOutcome.RETRYING),
        (2, DeliveryOutcome.DELIVERED),
    ]
    job_store.erase(job.id)
    assert job_store.get(job.id) is None and job_store.deliveries(job.id) == [] and job_store.event_for(job.id) is None


def test_queue_depth_counts_messages_of_every_priority(job_store, platform_settings):
    from deepfake_jobs.dispatch import app
    from deepfake_jobs.queues import TASK_FETCH

    queue = "depth-probe"
    for priority in (0, 3, 6, 9, 3):
        app.signature(TASK_FETCH, args=("no-such-job",), queue=queue, priority=priority).apply_async()
    try:
        assert job_store.queue_depth(queue) == 5
        assert job_store.queue_depths([queue, "empty-queue"]) == {queue: 5, "empty-queue": 0}
    finally:
        for key in job_store.redis.keys(f"{queue}*"):
            job_store.redis.delete(key)


def test_jobs_lost_from_redis_are_found_page_by_page(job_store, object_store, tenant_id, monkeypatch):
    from deepfake_jobs.store import data_loss

    monkeypatch.setattr(data_loss, "INFLIGHT_PAGE", 2)  # several pages from a few records
    jobs = [job_store.create(new_job(tenant_id)) for _ in range(3)]
    kept = job_store.create(new_job(tenant_id))
    for job in jobs:
        job_store.redis.delete(f"deepfake:job:{job.id}")  # Redis lost these records
    lost = job_store.lost_inflight_jobs(limit=100_000)
    assert {job.id for job in jobs} <= set(lost) and kept.id not in lost
    assert len(job_store.lost_inflight_jobs(limit=2)) == 2
    for job in [*jobs, kept]:
        object_store.delete(inflight_key(job.id))
        job_store.forget_active(job.id)

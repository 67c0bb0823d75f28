"""Transient failures are retried with backoff and a bounded number of times; a stage past its time limit fails
the job with a clear code instead of hanging it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from deepfake_jobs.models import JobStatus, Stage

from tests.stack.servers import CeleryWorker, Route


def test_a_transient_fetch_error_is_retried_until_it_succeeds(
    submit_url, wait_for_job, http_server, tenant_id, short_clip
):
    path = f"/flaky/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=short_clip + tenant_id.encode(), content_type="video/mp4", fail_first=2))
    done = wait_for_job(submit_url(tenant_id, url).id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert [r.status for r in http_server.received(path)] == [500, 500, 200]
    fetches = [run for run in done.stage_runs if run.stage is Stage.FETCH]
    assert len(fetches) == 3 and all(run.duration_ms is not None for run in fetches)


def test_retries_are_bounded_and_then_the_job_fails_with_the_cause(
    submit_url, wait_for_job, http_server, platform_settings, tenant_id
):
    path = f"/down/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=b"down", status=503))
    done = wait_for_job(submit_url(tenant_id, url).id)
    attempts = platform_settings.task_max_retries + 1
    assert done.status is JobStatus.FAILED and done.error.code == "fetch_failed"
    assert "503" in done.error.message and f"after {attempts} attempts" in done.error.message
    assert len(http_server.received(path)) == attempts


def test_a_404_is_not_retried(submit_url, wait_for_job, http_server, tenant_id):
    path = f"/gone/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=b"gone", status=404))
    done = wait_for_job(submit_url(tenant_id, url).id)
    assert done.status is JobStatus.FAILED and done.error.code == "fetch_failed"
    assert len(http_server.received(path)) == 1


LIMITED_QUEUES = {
    "DEEPFAKE_QUEUE_PREPROCESS": "limited-preprocess",
    "DEEPFAKE_QUEUE_INFERENCE": "limited-inference",
    "DEEPFAKE_QUEUE_EXPLAIN": "limited-explain",
    "DEEPFAKE_QUEUE_WEBHOOKS": "limited-webhooks",
}

LIMITS = {"DEEPFAKE_JOB_SOFT_TIME_LIMIT_S": "3", "DEEPFAKE_JOB_TIME_LIMIT_S": "8"}


@pytest.fixture(scope="module")
def limited_worker(service_env: dict[str, str], celery_worker) -> Iterator[CeleryWorker]:  # noqa: ANN001
    """A worker whose stages may run 3 s (soft) / 8 s (hard), on queues of its own (room for a loaded machine)."""
    env = {**service_env, **LIMITED_QUEUES, **LIMITS}
    with CeleryWorker(env, list(LIMITED_QUEUES.values()), concurrency=1, node_name="limited") as worker:
        yield worker


def test_a_stage_past_its_soft_time_limit_fails_the_job(
    limited_worker, job_store, wait_for_job, http_server, tenant_id, short_clip
):
    from deepfake_jobs.dispatch import pipeline
    from deepfake_jobs.models import Job, MediaRef, MediaSourceKind
    from deepfake_worker.settings import WorkerSettings

    release = threading.Event()
    path = f"/endless/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=short_clip, hold=release))
    job = job_store.create(Job(tenant_id=tenant_id, media=MediaRef(source=MediaSourceKind.URL, url=url)))
    queues = WorkerSettings(**{name.removeprefix("DEEPFAKE_").lower(): value for name, value in LIMITED_QUEUES.items()})
    pipeline(job, settings=queues).apply_async()
    try:
        done = wait_for_job(job.id, timeout_s=60)
    finally:
        release.set()
    assert done.status is JobStatus.FAILED and done.error.code == "stage_timeout"
    assert done.stage is Stage.FETCH and "3 s" in done.error.message


def test_a_stage_killed_at_the_hard_time_limit_fails_the_job(
    limited_worker, job_store, wait_for_job, http_server, tenant_id, short_clip
):
    """A stage that cannot act on the soft limit (stuck in native code; here: its process is stopped) is killed at
    the hard limit, and the main worker process fails the job and sends its webhook: the job never hangs."""
    import os
    import signal

    from deepfake_jobs.dispatch import pipeline
    from deepfake_jobs.models import Job, JobOptions, MediaRef, MediaSourceKind
    from deepfake_worker.settings import WorkerSettings

    release = threading.Event()
    path = f"/stuck/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=short_clip, hold=release))
    hook_path = f"/hooks/stuck/{tenant_id}"
    hook = http_server.add(hook_path, Route(body=b"ok"))
    job = job_store.create(
        Job(
            tenant_id=tenant_id,
            media=MediaRef(source=MediaSourceKind.URL, url=url),
            options=JobOptions(callback_url=hook),
        )
    )
    queues = WorkerSettings(**{name.removeprefix("DEEPFAKE_").lower(): value for name, value in LIMITED_QUEUES.items()})
    pipeline(job, settings=queues).apply_async()
    try:
        http_server.wait_for(path)  # the fetch stage is reading the media
        (pool_process,) = limited_worker.pool_pids()
        os.kill(pool_process, signal.SIGSTOP)  # it can no longer handle SIGUSR1, the soft limit
        done = wait_for_job(job.id, timeout_s=60)
    finally:
        release.set()
    hard_limit_s = LIMITS["DEEPFAKE_JOB_TIME_LIMIT_S"]
    assert done.status is JobStatus.FAILED and done.error.code == "stage_timeout", done.error
    assert f"hard time limit of {hard_limit_s} s" in done.error.message
    assert f"Hard time limit ({hard_limit_s}s) exceeded" in limited_worker.log_path.read_text(errors="replace")
    (delivery,) = http_server.wait_for(hook_path, 1, method="POST")
    event = json.loads(delivery.body)
    assert event["job"]["id"] == job.id and event["job"]["error"]["code"] == "stage_timeout"

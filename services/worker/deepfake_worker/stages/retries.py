"""Trying a stage again later: bounded retries with backoff after a transient error, and the time-bounded wait
for a model server that does not answer (a restart, a node drain, a rollout)."""

from __future__ import annotations

import logging

from celery import Task
from deepfake_core.errors import DetectionError
from deepfake_jobs.models import WAITING_FOR_MODEL, Stage, utcnow

from deepfake_worker.errors import TRANSIENT_ERRORS
from deepfake_worker.services import services
from deepfake_worker.stages.records import fail_job, finish_stage

log = logging.getLogger(__name__)


def retry_or_fail(
    task: Task, job_id: str, stage: Stage, started: float, code: str, message: str, error: BaseException
) -> str:
    """Retry the task after `task_retry_backoff_s * 2**retries`, or fail the job with `code` once the retries are
    spent."""
    settings = services().settings
    retries = task.request.retries
    if retries < settings.task_max_retries:
        try:
            finish_stage(job_id, stage, started, {})
        except TRANSIENT_ERRORS as unrecorded:  # Redis itself is what failed: the retry matters, not the record
            log.warning("job %s: could not close the %s run before its retry: %r", job_id, stage.value, unrecorded)
        countdown = settings.task_retry_backoff_s * 2**retries
        log.warning("job %s: %s retry %d in %.1f s after %s", job_id, stage.value, retries + 1, countdown, error)
        raise task.retry(exc=error, countdown=countdown, max_retries=settings.task_max_retries)
    fail_job(job_id, stage, started, code, f"{message} (after {retries + 1} attempts)")
    return job_id


def wait_for_model(task: Task, job_id: str, stage: Stage, started: float, error: DetectionError) -> str:
    """Retry `stage` until the model server answers again, for up to `model_wait_s` in all.

    A restart, a node drain or a rollout of the model server can outlast any count of exponential retries (they
    gave up after about 80 s), so the budget is time, counted from the job's first failure (`waiting_since`);
    meanwhile the job shows `progress_stage=waiting_for_model`. Past the budget it fails with the documented
    `service_unavailable`.
    """
    svc = services()
    settings = svc.settings
    job = svc.store.get(job_id)
    now = utcnow()
    since = job.waiting_since if job is not None and job.waiting_since is not None else now
    waited = (now - since).total_seconds()
    left = settings.model_wait_s - waited
    if left > 0:
        finish_stage(job_id, stage, started, {"progress_stage": WAITING_FOR_MODEL, "waiting_since": since})
        retries = task.request.retries
        countdown = min(settings.task_retry_backoff_s * 2 ** min(retries, 16), settings.model_wait_retry_max_s, left)
        log.warning("job %s: model server unavailable for %.0f s, next try in %.1f s: %s", job_id, waited,
                    countdown, error)  # fmt: skip
        raise task.retry(exc=error, countdown=max(countdown, 0.1), max_retries=retries + 1)
    fail_job(
        job_id,
        stage,
        started,
        "service_unavailable",
        f"The model server did not answer for {waited:.0f} s ({error.message}); submit the job again later.",
    )
    return job_id

"""The Celery tasks: fetch -> preprocess -> inference -> explain -> notify, plus the beat sweeps.

Only the wiring lives here (names, base class, retries); each task calls its work in `deepfake_worker.stages`
(the stage runner and the stages), `deepfake_worker.sweeps` (retention, stalled jobs).
"""

from __future__ import annotations

from typing import Any

from celery import Task
from deepfake_jobs.dispatch import notify_job
from deepfake_jobs.queues import (
    TASK_EXPLAIN,
    TASK_FETCH,
    TASK_INFERENCE,
    TASK_NOTIFY,
    TASK_PREPROCESS,
    TASK_RESUME_STALLED,
    TASK_RETENTION,
)

from deepfake_worker.celery_app import app
from deepfake_worker.stages.chain import run_pipeline
from deepfake_worker.stages.notify import deliver_webhook
from deepfake_worker.stages.runner import fail_after_escape
from deepfake_worker.sweeps import erase_expired_jobs, resume_stalled_jobs


class PipelineTask(Task):
    """Base of the stage tasks: the last resort for a stage that died without marking its job.

    Celery calls `on_failure` for an error that escaped `run_stage` (in the pool process) and for a stage killed
    at the hard time limit (in the main process, after the kill); the job is failed and its webhook sent.
    """

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        job_id = args[0] if args else None
        if not isinstance(job_id, str):
            return
        job = fail_after_escape(job_id, exc)
        if job is not None:
            notify_job(job)


@app.task(bind=True, base=PipelineTask, name=TASK_FETCH)
def fetch(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_FETCH)


@app.task(bind=True, base=PipelineTask, name=TASK_PREPROCESS)
def preprocess(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_PREPROCESS)


@app.task(bind=True, base=PipelineTask, name=TASK_INFERENCE)
def infer(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_INFERENCE)


@app.task(bind=True, base=PipelineTask, name=TASK_EXPLAIN)
def explain(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_EXPLAIN)


@app.task(bind=True, name=TASK_NOTIFY, max_retries=None)
def notify(self: Task, job_id: str, manual: bool = False) -> str:
    """Send the finished job's signed webhook; retried with backoff (on this queue) until the retry period ends.

    The retry budget is time (`webhook_retry_period_s`, decided by `attempt_delivery`), never a count: the task's
    `max_retries=None` is what makes Celery retry without limit (`self.retry(max_retries=None)` alone means "the
    task's default", 3, which gave up after 4 attempts while the delivery log still said `retrying`).
    """
    countdown = deliver_webhook(job_id, manual=manual)
    if countdown is not None:
        raise self.retry(countdown=countdown, max_retries=None)
    return job_id


@app.task(name=TASK_RETENTION)
def retention(now: str | None = None) -> dict[str, Any]:
    """Erase jobs (media, outputs, results, records) created more than `retention_days` ago."""
    return erase_expired_jobs(now)


@app.task(name=TASK_RESUME_STALLED)
def resume_stalled(now: str | None = None) -> dict[str, list[str]]:
    """Re-drive unfinished jobs that stopped progressing and resend overdue webhooks (lost broker messages);
    see deepfake_worker.recovery."""
    return resume_stalled_jobs(now)

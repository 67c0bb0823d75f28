"""The workers' Celery app: the queue contract of `deepfake_jobs.queues`, the task modules and the beat schedule.

Run a worker with `celery -A deepfake_worker.celery_app worker -Q preprocess,inference,explain,webhooks`, and beat
with `celery -A deepfake_worker.celery_app beat`. Senders (the gateway) use `deepfake_jobs.dispatch` instead.
"""

from __future__ import annotations

from celery import Celery
from deepfake_jobs.queues import TASK_RESUME_STALLED, TASK_RETENTION, create_celery_app

from deepfake_worker.settings import WorkerSettings, get_worker_settings


def beat_schedule(settings: WorkerSettings) -> dict[str, dict[str, object]]:
    """The periodic sweeps: retention, and re-driving jobs whose broker message was lost."""
    return {
        "erase-expired-jobs": {"task": TASK_RETENTION, "schedule": float(settings.retention_interval_s)},
        "resume-stalled-jobs": {"task": TASK_RESUME_STALLED, "schedule": float(settings.stall_check_interval_s)},
    }


def create_app(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or get_worker_settings()
    app = create_celery_app(settings, include=["deepfake_worker.tasks", "deepfake_worker.signals"])
    app.conf.beat_schedule = beat_schedule(settings)
    return app


app = create_app()

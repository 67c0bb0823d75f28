"""The one Celery app of the platform: broker, queues, routes, reliability settings and the beat schedule.

Importing it loads no task code (tasks are `include`d when a worker starts), so the gateway can send tasks
with it. Run a worker with `celery -A deepfake_worker.celery_app worker -Q preprocess,inference,explain,webhooks`.
"""

from __future__ import annotations

from celery import Celery
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.store import PRIORITY_SEP, PRIORITY_STEPS
from kombu import Queue

from deepfake_worker.settings import WorkerSettings, get_worker_settings

# Task names: the gateway and dispatch refer to tasks only by these.
TASK_FETCH = "deepfake.fetch"
TASK_PREPROCESS = "deepfake.preprocess"
TASK_INFERENCE = "deepfake.inference"
TASK_EXPLAIN = "deepfake.explain"
TASK_NOTIFY = "deepfake.notify"
TASK_RETENTION = "deepfake.retention"
TASK_RESUME_STALLED = "deepfake.resume_stalled"

DEFAULT_PRIORITY = 3  # "normal" (deepfake_jobs.models.Priority); 0 is consumed first


def task_routes(settings: PlatformSettings) -> dict[str, dict[str, str]]:
    """Queues by resource profile: CPU decoding, model calls, light aggregation, network-only webhooks."""
    return {
        TASK_FETCH: {"queue": settings.queue_preprocess},
        TASK_PREPROCESS: {"queue": settings.queue_preprocess},
        TASK_INFERENCE: {"queue": settings.queue_inference},
        TASK_EXPLAIN: {"queue": settings.queue_explain},
        TASK_NOTIFY: {"queue": settings.queue_webhooks},
        TASK_RETENTION: {"queue": settings.queue_webhooks},
        TASK_RESUME_STALLED: {"queue": settings.queue_webhooks},
    }


def create_app(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or get_worker_settings()
    app = Celery("deepfake", broker=settings.redis_url, include=["deepfake_worker.tasks"])
    # A message is redelivered if not acked within the visibility timeout: it must outlast the longest stage
    # and the longest webhook countdown, or a slow task would run twice.
    visibility_timeout = int(max(settings.job_time_limit_s, settings.webhook_backoff_max_s) + 600)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # state lives in the JobStore, not in a result backend
        result_backend=None,
        # A task is acknowledged after it ran, and requeued if its process died: a crash resumes the job.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long tasks: do not hoard messages another worker could run
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_time_limit_s,
        task_default_queue=settings.queue_preprocess,
        task_queues=[Queue(name) for name in settings.queues],
        task_routes=task_routes(settings),
        task_default_priority=DEFAULT_PRIORITY,
        broker_transport_options={
            "priority_steps": list(PRIORITY_STEPS),
            "sep": PRIORITY_SEP,
            "queue_order_strategy": "priority",
            "visibility_timeout": visibility_timeout,
        },
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        beat_schedule={
            "erase-expired-jobs": {"task": TASK_RETENTION, "schedule": float(settings.retention_interval_s)},
            "resume-stalled-jobs": {"task": TASK_RESUME_STALLED, "schedule": float(settings.stall_check_interval_s)},
        },
    )
    return app


app = create_app()

"""The queue contract between the gateway and the workers: task names, routes, priority lists, queue depth.

Both Celery apps are built here (`create_celery_app`): the sender the gateway uses and the worker's own, so a
message sent by name lands on the queue and priority list that a worker of that name consumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis
from celery import Celery
from kombu import Queue

from deepfake_jobs.settings import PlatformSettings

# Task names: the only way the gateway and the workers refer to each other's code.
TASK_FETCH = "deepfake.fetch"
TASK_PREPROCESS = "deepfake.preprocess"
TASK_INFERENCE = "deepfake.inference"
TASK_EXPLAIN = "deepfake.explain"
TASK_NOTIFY = "deepfake.notify"
TASK_RETENTION = "deepfake.retention"
TASK_RESUME_STALLED = "deepfake.resume_stalled"

# A job's chain, in order: fetch -> preprocess -> inference -> explain -> notify.
PIPELINE = (TASK_FETCH, TASK_PREPROCESS, TASK_INFERENCE, TASK_EXPLAIN, TASK_NOTIFY)

DEFAULT_PRIORITY = 3  # "normal" (deepfake_jobs.models.Priority); 0 is consumed first
# Celery's Redis transport keeps one list per priority step: "queue" for step 0, "queue<SEP><step>" for the
# others. Both apps configure the transport with these, and queue_depth() sums them.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


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


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold one Celery queue's waiting messages, one per priority step."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:]]


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue (all priority lists); reserved/ETA messages are not counted."""
    with client.pipeline() as pipe:
        for name in priority_lists(queue):
            pipe.llen(name)
        return sum(int(length) for length in pipe.execute())


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    return {queue: queue_depth(client, queue) for queue in queues}


def create_celery_app(settings: PlatformSettings, *, include: Sequence[str] = (), current: bool = True) -> Celery:
    """A Celery app on the platform's broker, queues, routes and reliability settings.

    `include` names the task modules a worker imports when it starts; a sender passes none and so loads no
    task code (and no model). A sender is made with `current=False`: in a worker process it must not become
    Celery's current app in place of the worker's own.
    """
    app = Celery("deepfake", broker=settings.redis_url, include=list(include), set_as_current=current)
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
    )
    return app

"""Sending jobs to the workers, by task name: what the gateway (and the worker's sweeps) call after storing a job.

Nothing here imports task code or models; the chain is built from signatures by name (`deepfake_jobs.queues`).
"""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from deepfake_jobs.models import Job
from deepfake_jobs.queues import PIPELINE, TASK_NOTIFY, TASK_RETENTION, create_celery_app, task_routes
from deepfake_jobs.settings import PlatformSettings, get_platform_settings
from deepfake_jobs.store import JobStore

# The sender: this process's broker, queues and routes, no task modules.
app = create_celery_app(get_platform_settings(), current=False)


def _signature(name: str, job: Job, settings: PlatformSettings | None = None, **kwargs: object) -> Signature:
    routes = task_routes(settings or get_platform_settings())
    return app.signature(
        name,
        args=(job.id,),
        kwargs=kwargs,
        immutable=True,  # every stage takes the job id only; state travels through the store and S3
        queue=routes[name]["queue"],
        priority=job.options.priority.celery_priority,
    )


def pipeline(job: Job, stages: tuple[str, ...] = PIPELINE, settings: PlatformSettings | None = None) -> Signature:
    """The job's chain: fetch -> preprocess -> inference -> explain -> notify (or some of it).

    `settings` chooses the queue names (default: this process's); a deployment with several worker pools
    uses it to send a job to another pool's queues.
    """
    return chain(*(_signature(name, job, settings) for name in stages))


def submit_job(job: Job) -> None:
    """Queue a stored job. Safe to call again for a stuck job: finished stages are skipped, not redone."""
    pipeline(job).apply_async()


def resume_job(job: Job) -> None:
    """Re-drive an unfinished job (e.g. after the broker lost its messages); stages reuse stored outputs."""
    submit_job(job)


def notify_job(job: Job, *, manual: bool = False) -> None:
    """Send the finished job's webhook, for a job finished outside the chain: with the usual retries, or with
    `manual` one attempt only (a redelivery asked for through the API)."""
    queue = task_routes(get_platform_settings())[TASK_NOTIFY]["queue"]
    kwargs = {"manual": True} if manual else {}
    app.signature(TASK_NOTIFY, args=(job.id,), kwargs=kwargs, queue=queue).apply_async()


def redeliver_webhook(job: Job) -> None:
    """One more delivery of the job's webhook event (the API's redeliver endpoint); not retried if it fails."""
    notify_job(job, manual=True)


def run_retention() -> None:
    """Queue one retention pass now (beat also runs it every `retention_interval_s`)."""
    app.signature(TASK_RETENTION, queue=task_routes(get_platform_settings())[TASK_RETENTION]["queue"]).apply_async()


def accepting_jobs(store: JobStore, settings: PlatformSettings) -> bool:
    """Backpressure: False when the first queue holds `max_queue_depth` messages or more (answer 503)."""
    return store.queue_depth(settings.queue_preprocess) < settings.max_queue_depth

"""The notify stage: the finished job's signed webhook, one attempt per call; the task retries on its schedule.

The retry budget is time (`webhook_retry_period_s`, decided by `deepfake_jobs.webhooks.attempt_delivery`).
"""

from __future__ import annotations

import time

from deepfake_jobs.metrics import STAGE_DURATION
from deepfake_jobs.models import DeliveryOutcome, JobStatus, Stage, utcnow
from deepfake_jobs.webhooks import attempt_delivery, build_event

from deepfake_worker.services import services


def deliver_webhook(job_id: str, *, manual: bool = False) -> float | None:
    """Send the job's webhook event once; the seconds until the next attempt is due, or None when none is.

    Nothing is sent for an unfinished job, one without a callback, or (unless `manual`, a redelivery asked for
    through the API) an event already delivered: a duplicate message.
    """
    svc = services()
    started = time.perf_counter()
    try:
        job = svc.store.get(job_id)
        if job is None or job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED) or not job.options.callback_url:
            return None
        event = svc.store.save_event(build_event(job))
        if not manual and any(a.outcome is DeliveryOutcome.DELIVERED for a in svc.store.deliveries(job_id)):
            return None  # a duplicate message: the event was already delivered
        attempt = attempt_delivery(
            svc.store, svc.settings, event, job.tenant_id, retry=not manual, secret_for=svc.webhook_secret
        )
    finally:
        STAGE_DURATION.labels(stage=Stage.NOTIFY.value).observe(time.perf_counter() - started)
    if attempt.outcome is DeliveryOutcome.RETRYING and attempt.next_retry_at is not None:
        return max(0.0, (attempt.next_retry_at - utcnow()).total_seconds())
    return None

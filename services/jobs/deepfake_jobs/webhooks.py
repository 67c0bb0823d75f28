"""Signed webhook events for finished jobs: one event per job, delivered with retries and a delivery log.

The signature scheme lives in `deepfake_client.signing` (standard library only) so that receivers verify with
the very function the platform signs with; it is re-exported here. Each tenant's signing secret is derived from
the platform's `webhook_signing_key`, so the gateway can show it and the workers can sign without a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from deepfake_client.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    compute_signature,
    verify_signature,
)
from deepfake_client.signing import sign as signature_header

from deepfake_jobs.metrics import WEBHOOK_DELIVERIES
from deepfake_jobs.models import DeliveryAttempt, DeliveryOutcome, EventType, Job, JobStatus, utcnow
from deepfake_jobs.safe_fetch import FetchError, check_url_allowed, send_vetted, vetted_client
from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.store import JobStore
from deepfake_jobs.views import WebhookEvent, public_job

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "attempt_delivery",
    "backoff_delay",
    "build_event",
    "compute_signature",
    "event_body",
    "next_retry_at",
    "signature_header",
    "tenant_webhook_secret",
    "verify_signature",
]

EVENT_ID_HEADER = "Deepfake-Event-Id"
MAX_ERROR_CHARS = 500


def tenant_webhook_secret(settings: PlatformSettings, tenant_id: str) -> str:
    """The secret a tenant verifies its webhooks with: HMAC of the tenant id under the platform key.

    Rotating `webhook_signing_key` rotates every tenant's secret.
    """
    key = settings.webhook_signing_key.get_secret_value().encode()
    return "whsec_" + hmac.new(key, f"webhook-secret:{tenant_id}".encode(), hashlib.sha256).hexdigest()


def build_event(job: Job) -> WebhookEvent:
    """The event announcing a finished job; canceled jobs have none (the client asked for the cancel).

    Its `job` is the public document (`deepfake_jobs.views.public_job`), the same one `GET /v1/jobs/{id}`
    serves: internal fields (tenant, object keys, attempts, stage runs) never leave in a webhook.
    """
    types = {JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED, JobStatus.FAILED: EventType.JOB_FAILED}
    if job.status not in types:
        raise ValueError(f"job {job.id} is {job.status.value}; only succeeded and failed jobs have events")
    return WebhookEvent(id=event_id_for(job), type=types[job.status], job=public_job(job))


def event_id_for(job: Job) -> str:
    """The id of a finished job's event, derived from the job: an event rebuilt after Redis lost the stored
    one (and sent again) keeps its id, so receivers that deduplicate by event id see it once."""
    return "evt_" + hashlib.sha256(f"{job.id}:{job.status.value}".encode()).hexdigest()[:32]


def event_body(event: WebhookEvent) -> bytes:
    """The exact bytes that are signed and sent."""
    return event.body()


def backoff_delay(attempt: int, settings: PlatformSettings, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped, with jitter.

    "Equal jitter": half the capped exponential delay is fixed, the other half random, so receivers that
    failed together do not get hit together again, and a delay never collapses to zero.
    """
    capped = min(settings.webhook_backoff_max_s, settings.webhook_backoff_base_s * 2 ** max(0, attempt - 1))
    return capped / 2 + (rng or random).uniform(0, capped / 2)


def next_retry_at(
    event: WebhookEvent, attempt: int, settings: PlatformSettings, now: datetime, rng: random.Random | None = None
) -> datetime | None:
    """When to try again after failed attempt `attempt`, or None when the retry period is over."""
    when = now + timedelta(seconds=backoff_delay(attempt, settings, rng))
    if when > event.created_at + timedelta(seconds=settings.webhook_retry_period_s):
        return None
    return when


def attempt_delivery(
    store: JobStore,
    settings: PlatformSettings,
    event: WebhookEvent,
    tenant_id: str,
    *,
    retry: bool = True,
    secret_for: Callable[[str], str] | None = None,
) -> DeliveryAttempt:
    """POST the event to the job's callback URL once, log the attempt, and say whether to retry.

    `tenant_id` (the job's owner, not part of the public event) chooses the signing secret.

    The URL is vetted again now (its DNS may have changed since submission): a refused URL is logged as
    `refused` and never retried. With `retry=False` (a manual redelivery) a failure is final.
    `secret_for(tenant_id)` gives the signing secret (the worker passes the tenant registry's
    `webhook_secret`, which honours a tenant's own secret); by default the derived one.
    """
    url = event.job.options.callback_url
    if not url:
        raise ValueError(f"job {event.job.id} has no callback_url")
    number = store.next_attempt_number(event.id)
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        vetted = check_url_allowed(url, settings)
    except FetchError as refusal:
        outcome, error = DeliveryOutcome.REFUSED, refusal.message
    else:
        body = event_body(event)
        secret = secret_for(tenant_id) if secret_for else tenant_webhook_secret(settings, tenant_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body),
            EVENT_HEADER: event.type.value,
            EVENT_ID_HEADER: event.id,
            DELIVERY_HEADER: f"{event.id}.{number}",
        }
        try:
            with vetted_client(settings, read_timeout_s=settings.webhook_timeout_s) as client:
                # Streamed and closed unread: only the status matters, and a receiver's body could be huge.
                response = send_vetted(client, "POST", vetted, headers=headers, content=body, stream=True)
                response.close()
            status_code = response.status_code
            if 200 <= status_code < 300:
                outcome = DeliveryOutcome.DELIVERED
            else:
                outcome, error = DeliveryOutcome.FAILED, f"the receiver answered HTTP {status_code}"
        except Exception as failure:  # noqa: BLE001 - any network failure is a failed attempt, logged
            outcome, error = DeliveryOutcome.FAILED, f"{type(failure).__name__}: {failure}"[:MAX_ERROR_CHARS]
    now = utcnow()
    retry_at = None
    if outcome is DeliveryOutcome.FAILED and retry:
        retry_at = next_retry_at(event, number, settings, now)
        if retry_at is not None:
            outcome = DeliveryOutcome.RETRYING
    attempt = DeliveryAttempt(
        event_id=event.id,
        attempt=number,
        url=url,
        outcome=outcome,
        status_code=status_code,
        error=error,
        at=now,
        next_retry_at=retry_at,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    store.record_delivery(event.job.id, attempt)
    WEBHOOK_DELIVERIES.labels(outcome=outcome.value).inc()
    return attempt

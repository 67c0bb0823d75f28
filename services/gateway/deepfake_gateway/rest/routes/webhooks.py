"""Webhooks: a job's delivery log, redelivery on demand, and the secret that verifies the signatures."""

from __future__ import annotations

from typing import Any

from deepfake_client.signing import SIGNATURE_HEADER
from deepfake_jobs.dispatch import redeliver_webhook
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from deepfake_gateway import job_access
from deepfake_gateway.problems import ProblemCode, ProblemError, problem_responses
from deepfake_gateway.rest import examples
from deepfake_gateway.rest.deps import ContextDep, TenantDep
from deepfake_gateway.rest.schemas import DeliveryLogView, DeliveryView, RedeliveryView, WebhookSecretView

router = APIRouter(tags=["webhooks"])

_JOB_PROBLEMS = (ProblemCode.UNAUTHORIZED, ProblemCode.RATE_LIMITED, ProblemCode.JOB_NOT_FOUND)


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    summary="A job's webhook delivery log",
    response_model=DeliveryLogView,
    responses={
        200: {"description": "Every attempt, oldest first.", "content": examples.json_example(examples.DELIVERIES)},
        **problem_responses(*_JOB_PROBLEMS),
    },
)
async def list_deliveries(job_id: str, ctx: ContextDep, tenant: TenantDep) -> Any:
    """Each delivery attempt of the job's webhook: when, where, the receiver's answer, and the next retry."""

    def load() -> DeliveryLogView:
        job = job_access.get_job(ctx, job_id, tenant.id)
        event = ctx.store.event_for(job.id)
        return DeliveryLogView(
            job_id=job.id,
            event_id=event.id if event else None,
            event_type=event.type.value if event else None,
            deliveries=[DeliveryView.of(attempt) for attempt in ctx.store.deliveries(job.id)],
        )

    return await run_in_threadpool(load)


@router.post(
    "/v1/jobs/{job_id}/deliveries/redeliver",
    status_code=202,
    summary="Deliver a job's webhook again",
    response_model=RedeliveryView,
    responses={
        202: {"description": "A new attempt is queued.", "content": examples.json_example(examples.REDELIVERY)},
        **problem_responses(*_JOB_PROBLEMS, ProblemCode.JOB_NOT_FINISHED, ProblemCode.VALIDATION_ERROR),
    },
)
async def redeliver(job_id: str, ctx: ContextDep, tenant: TenantDep) -> Any:
    """Queue one more delivery of the job's event (e.g. after your receiver was down past the retries)."""

    def queue() -> RedeliveryView:
        job = job_access.get_job(ctx, job_id, tenant.id)
        if not job.options.callback_url:
            raise ProblemError(
                ProblemCode.VALIDATION_ERROR, "This job has no callback_url; there is nothing to deliver."
            )
        event = ctx.store.event_for(job.id)
        if event is None:
            raise ProblemError(
                ProblemCode.JOB_NOT_FINISHED,
                f"Job {job.id} is {job.status.value} and has no webhook event yet; it is sent when the job finishes.",
            )
        redeliver_webhook(job)
        return RedeliveryView(job_id=job.id, event_id=event.id, status="queued")

    return await run_in_threadpool(queue)


@router.get(
    "/v1/webhooks/secret",
    summary="Your webhook signing secret",
    response_model=WebhookSecretView,
    responses={
        200: {"description": "Verify webhooks with it.", "content": examples.json_example(examples.WEBHOOK_SECRET)},
        **problem_responses(ProblemCode.UNAUTHORIZED, ProblemCode.RATE_LIMITED),
    },
)
async def webhook_secret(ctx: ContextDep, tenant: TenantDep) -> Any:
    """The secret of the HMAC-SHA256 `Deepfake-Signature` header (deepfake_client.verify_signature checks it)."""
    secret = await run_in_threadpool(ctx.tenants.webhook_secret, tenant.id, ctx.settings)
    return WebhookSecretView(secret=secret, signature_header=SIGNATURE_HEADER, scheme="t=<unix>,v1=<hex hmac-sha256>")

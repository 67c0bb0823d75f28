"""A tenant's access to its own jobs: reading, watching, cancelling and erasing them; their stored results and the
result documents served with presigned heatmap URLs.

Shared by REST (rest/routes/) and gRPC (grpc/server.py); creating jobs is submission.py's. A job of another tenant
is reported exactly like a job that does not exist (404 job_not_found), so ids reveal nothing across tenants. Store
calls are synchronous; the async functions here (long-poll, watch) run them in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from deepfake_core.result import DetectionResult
from deepfake_jobs.models import Job, JobStatus
from deepfake_jobs.retention import erase_job
from deepfake_jobs.store.errors import InvalidTransition, JobNotFound
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from deepfake_gateway.context import GatewayContext
from deepfake_gateway.problems import ProblemCode, ProblemError

log = logging.getLogger(__name__)


class ServedResult(DetectionResult):
    """The core's result document as the API serves it: heatmap refs are presigned URLs, plus job facts."""

    job_id: str = Field(description="The job this result answers.")
    cache_hit: bool = Field(description="Reused from an earlier job with identical media and model version.")


def job_not_found(job_id: str) -> ProblemError:
    return ProblemError(ProblemCode.JOB_NOT_FOUND, f"No job {job_id} exists for this API key.")


def get_job(ctx: GatewayContext, job_id: str, tenant_id: str) -> Job:
    """The tenant's job; 404 for a job that is missing or belongs to another tenant."""
    job = ctx.store.get(job_id, tenant_id) if _plausible_id(job_id) else None
    if job is None:
        raise job_not_found(job_id)
    return job


def _plausible_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and job_id.isascii() and job_id.replace("-", "").replace("_", "").isalnum()


# --- waiting --------------------------------------------------------------------------------------------------------


async def wait_for_status_change(ctx: GatewayContext, job_id: str, tenant_id: str, wait_s: float) -> Job:
    """The job once its status differs from now (or it is finished), or as it is after `wait_s` seconds."""
    job = await run_in_threadpool(get_job, ctx, job_id, tenant_id)
    deadline = time.monotonic() + min(max(wait_s, 0.0), ctx.settings.long_poll_max_s)
    initial = job.status
    while not job.terminal and job.status == initial and time.monotonic() < deadline:
        await asyncio.sleep(min(ctx.settings.long_poll_interval_s, max(0.0, deadline - time.monotonic())))
        job = await run_in_threadpool(get_job, ctx, job_id, tenant_id)
    return job


async def watch(ctx: GatewayContext, job_id: str, tenant_id: str) -> AsyncIterator[Job]:
    """The job now, then again each time its status, stage or progress changes, ending once it is finished."""
    last: tuple[Any, ...] | None = None
    while True:
        job = await run_in_threadpool(get_job, ctx, job_id, tenant_id)
        state = (job.status, job.stage, job.progress, job.error)
        if state != last:
            last = state
            yield job
        if job.terminal:
            return
        await asyncio.sleep(ctx.settings.long_poll_interval_s)


# --- results ----------------------------------------------------------------------------------------------------------


def stored_result(ctx: GatewayContext, job: Job) -> DetectionResult:
    """The result of a succeeded job as stored (heatmap refs are object keys); 409 before that, 404 once erased."""
    if job.status is JobStatus.FAILED:
        error = job.error
        detail = f"The job failed ({error.code}): {error.message}" if error else "The job failed."
        raise ProblemError(ProblemCode.JOB_FAILED, detail)
    if job.status is JobStatus.CANCELED:
        raise ProblemError(ProblemCode.JOB_CANCELED, "The job was canceled; it has no result.")
    if job.status is not JobStatus.SUCCEEDED:
        where = f" ({job.stage.value}, {job.progress}%)" if job.stage else ""
        raise ProblemError(
            ProblemCode.JOB_NOT_FINISHED,
            f"The job is {job.status.value}{where}; wait for it with GET /v1/jobs/{job.id}?wait=30 first.",
            retry_after_s=2,
        )
    if not job.result_key or not ctx.objects.exists(job.result_key):
        raise ProblemError(ProblemCode.RESULT_MISSING, f"The result of job {job.id} is no longer stored (erased).")
    return DetectionResult.model_validate_json(ctx.objects.get_bytes(job.result_key))


def result_document(ctx: GatewayContext, job: Job) -> ServedResult:
    """The result as the API serves it, with short-lived presigned URLs for its heatmaps."""
    document = stored_result(ctx, job)
    expiry = timedelta(seconds=ctx.settings.result_url_expiry_s)
    for track in document.tracks:
        for heatmap in track.heatmaps:
            heatmap.ref = presign_ref(ctx, heatmap.ref, expiry)
    return ServedResult(**document.model_dump(), job_id=job.id, cache_hit=job.cache_hit)


def object_key(ctx: GatewayContext, ref: str) -> str | None:
    """The object key of a stored ref (a key or `s3://bucket/key`); None for URLs and refs outside our bucket."""
    if ref.startswith(("http://", "https://", "/")):
        return None
    prefix = f"s3://{ctx.objects.bucket}/"
    if ref.startswith("s3://"):
        return ref[len(prefix) :] if ref.startswith(prefix) else None
    return ref


def presign_ref(ctx: GatewayContext, ref: str, expiry: timedelta) -> str:
    """A presigned GET URL for an object key (or `s3://bucket/key`); URLs pass unchanged."""
    if ref.startswith(("http://", "https://")):
        return ref
    return ctx.objects.presigned_get(object_key(ctx, ref) or ref, expires=expiry)


# --- cancel and erase -------------------------------------------------------------------------------------------------


def cancel_and_erase(ctx: GatewayContext, job_id: str, tenant_id: str) -> Job:
    """Cancel the job if it still runs, then erase its media, intermediate files, result, heatmaps and record.

    Returns the job as it was at the end (status canceled, or the terminal status it had reached). The
    workers stop at their next progress report, because the store refuses changes to a canceled job.
    """
    job = get_job(ctx, job_id, tenant_id)
    if not job.terminal:
        try:
            job = ctx.store.cancel(job.id, tenant_id)
        except InvalidTransition as finished:  # it finished in the meantime
            job = finished.job
        except JobNotFound as error:
            raise job_not_found(job_id) from error
    erased = erase_job(ctx.store, ctx.objects, job.id)
    log.info("job %s of tenant %s erased (%d objects)", job.id, tenant_id, erased)
    return job

"""/v1/jobs: submit media for analysis, follow a job, fetch its result, list, cancel and erase."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Annotated, Any

from deepfake_jobs.models import JobStatus
from deepfake_jobs.tenants import Tenant
from deepfake_jobs.views import JobView, job_path, public_job
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from deepfake_gateway import job_access
from deepfake_gateway.context import GatewayContext
from deepfake_gateway.job_access import ServedResult
from deepfake_gateway.problems import ProblemCode, ProblemError, problem_responses
from deepfake_gateway.rest import examples
from deepfake_gateway.rest.deps import ContextDep, TenantDep
from deepfake_gateway.rest.json_body import parse_json, read_body_capped
from deepfake_gateway.rest.multipart_stream import FILE_FIELD, MultipartError, MultipartStream
from deepfake_gateway.rest.schemas import JobPageView, SubmitJson
from deepfake_gateway.submission import Submitted, Submitter, build_options, check_idempotency_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MULTIPART_FIELDS = ("callback_url", "metadata", "priority", "sampling", "explain")
MULTIPART_OVERHEAD_BYTES = 1024 * 1024  # boundaries, part headers and option fields around the file
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

_AUTH_PROBLEMS = (ProblemCode.UNAUTHORIZED, ProblemCode.RATE_LIMITED)
_JOB_PROBLEMS = (*_AUTH_PROBLEMS, ProblemCode.JOB_NOT_FOUND)

SUBMIT_REQUEST_BODY = {
    "required": True,
    "description": (
        "Either multipart/form-data with the media in a `file` part (streamed to storage, never buffered whole) "
        "and options as form fields, or JSON naming the media by `media_url` or by `upload_id` (POST /v1/uploads)."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {"$ref": "#/components/schemas/SubmitMultipart"},
            "examples": {"upload": {"summary": "Upload a video", "value": examples.SUBMIT_MULTIPART_EXAMPLE}},
        },
        "application/json": {
            "schema": {"$ref": "#/components/schemas/SubmitJson"},
            "examples": examples.SUBMIT_JSON_EXAMPLES,
        },
    },
}

SUBMIT_MULTIPART_SCHEMA = {
    "title": "SubmitMultipart",
    "type": "object",
    "required": [FILE_FIELD],
    "properties": {
        FILE_FIELD: {"type": "string", "format": "binary", "description": "The image or video."},
        "callback_url": {"type": "string", "description": "Receives the signed webhook when the job ends."},
        "metadata": {"type": "string", "description": "A JSON object, echoed back (at most 16 KiB)."},
        "priority": {"type": "string", "enum": ["low", "normal", "high"], "default": "normal"},
        "sampling": {"type": "string", "description": "uniform:N, fps:R or windows:K."},
        "explain": {"type": "boolean", "default": True, "description": "Produce Grad-CAM heatmaps."},
    },
}


def _submitter(request: Request) -> Submitter:
    return request.app.state.submitter


@router.post(
    "",
    status_code=202,
    summary="Submit media for analysis",
    response_model=JobView,
    responses={
        202: {
            "description": "Accepted: the job is queued; follow it at the Location header.",
            "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
            "content": examples.json_example(examples.QUEUED_JOB, "A queued job"),
        },
        **problem_responses(
            ProblemCode.INVALID_BODY,
            *_AUTH_PROBLEMS,
            ProblemCode.BODY_TOO_LARGE,
            ProblemCode.IDEMPOTENCY_CONFLICT,
            ProblemCode.MEDIA_TOO_LARGE,
            ProblemCode.UNSUPPORTED_CONTENT_TYPE,
            ProblemCode.VALIDATION_ERROR,
            ProblemCode.INVALID_SAMPLING,
            ProblemCode.URL_NOT_ALLOWED,
            ProblemCode.UPLOAD_NOT_FOUND,
            ProblemCode.CONCURRENCY_LIMIT,
            ProblemCode.OVERLOADED,
        ),
    },
    openapi_extra={"requestBody": SUBMIT_REQUEST_BODY},
)
async def submit_job(
    request: Request,
    response: Response,
    ctx: ContextDep,
    tenant: TenantDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Same key and same request: the same job. Same key, other request: 409.",
        ),
    ] = None,
) -> Any:
    """Queue an image or a video. Answers `202` at once with the job; analysis runs in the background."""
    key = check_idempotency_key(idempotency_key)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        submitted = await _submit_multipart(request, ctx, tenant, key)
    elif content_type.startswith("application/json"):
        submitted = await _submit_json(request, ctx, tenant, key)
    else:
        raise ProblemError(
            ProblemCode.UNSUPPORTED_CONTENT_TYPE,
            "Send multipart/form-data (a 'file' part) or application/json ({'media_url'} or {'upload_id'}).",
        )
    response.headers["Location"] = job_path(submitted.job.id)
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return public_job(submitted.job).document()


async def _submit_json(request: Request, ctx: GatewayContext, tenant: Tenant, key: str | None) -> Submitted:
    body = parse_json(await read_body_capped(request, ctx.settings.max_json_body_bytes))
    try:
        payload = SubmitJson.model_validate(body)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from error
    if (payload.media_url is None) == (payload.upload_id is None):
        raise ProblemError(ProblemCode.VALIDATION_ERROR, "Give exactly one of media_url and upload_id.")
    submitter = _submitter(request)

    def submit() -> Submitted:
        options = build_options(
            ctx,
            callback_url=payload.callback_url,
            metadata=payload.metadata,
            priority=payload.priority,
            sampling=payload.sampling,
            explain=payload.explain,
        )
        if payload.media_url is not None:
            return submitter.submit_url(tenant, payload.media_url, options, key)
        return submitter.submit_presigned(tenant, payload.upload_id or "", options, key)

    return await run_in_threadpool(submit)


def _options_from_fields(ctx: GatewayContext, fields: dict[str, str]) -> Any:
    unknown = sorted(set(fields) - set(MULTIPART_FIELDS))
    if unknown:
        raise ProblemError(
            ProblemCode.VALIDATION_ERROR,
            f"Unknown form fields {', '.join(unknown)}; allowed: {FILE_FIELD}, {', '.join(MULTIPART_FIELDS)}.",
        )
    metadata: Any = None
    if fields.get("metadata"):
        try:
            metadata = json.loads(fields["metadata"])
        except (ValueError, RecursionError) as error:
            raise ProblemError(ProblemCode.VALIDATION_ERROR, "metadata must be a JSON object.") from error
    explain: bool | None = None
    if "explain" in fields:
        text = fields["explain"].strip().lower()
        if text not in _TRUE | _FALSE:
            raise ProblemError(ProblemCode.VALIDATION_ERROR, "explain must be true or false.")
        explain = text in _TRUE
    return build_options(
        ctx,
        callback_url=fields.get("callback_url") or None,
        metadata=metadata,
        priority=fields.get("priority") or None,
        sampling=fields.get("sampling") or None,
        explain=explain,
    )


async def _submit_multipart(request: Request, ctx: GatewayContext, tenant: Tenant, key: str | None) -> Submitted:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > ctx.settings.max_media_bytes + MULTIPART_OVERHEAD_BYTES:
        raise ProblemError(
            ProblemCode.MEDIA_TOO_LARGE,
            f"The request is {declared} bytes; media may be at most {ctx.settings.max_media_bytes} bytes.",
        )
    submitter = _submitter(request)
    try:
        stream = MultipartStream(
            request.headers["content-type"],
            request.stream().__aiter__(),
            stall_timeout_s=ctx.settings.upload_stall_timeout_s,
        )
        if not await stream.find_file():
            raise ProblemError(ProblemCode.VALIDATION_ERROR, f"Send the media as a form part named '{FILE_FIELD}'.")
        # Options sent before the file are checked before a byte of it is stored.
        await run_in_threadpool(_options_from_fields, ctx, stream.fields)
        if key is not None and await run_in_threadpool(submitter.key_is_bound, tenant, key):
            return await _replay_multipart(stream, ctx, submitter, tenant, key)
        job_id, reservation = await run_in_threadpool(submitter.begin_upload, tenant)
        try:
            loop = asyncio.get_running_loop()
            reader = stream.reader(loop)
            stored = await loop.run_in_executor(
                ctx.upload_executor, submitter.store_upload, job_id, tenant, reader, stream.file_content_type
            )
            await stream.drain()
            options = await run_in_threadpool(_options_from_fields, ctx, stream.fields)
        except BaseException:
            await run_in_threadpool(submitter.abandon_upload, tenant, job_id, reservation)
            raise
    except MultipartError as error:
        raise ProblemError(ProblemCode.INVALID_BODY, str(error)) from error
    except ClientDisconnect as error:  # the client went away mid-upload; nothing was kept
        raise ProblemError(ProblemCode.INVALID_BODY, "The upload was interrupted before its end.") from error
    return await run_in_threadpool(
        submitter.finish_upload,
        tenant,
        job_id,
        stored,
        options,
        key,
        reservation,
        stream.filename,
        stream.file_content_type,
    )


async def _replay_multipart(
    stream: MultipartStream, ctx: GatewayContext, submitter: Submitter, tenant: Tenant, key: str
) -> Submitted:
    """The Idempotency-Key was used before: hash the body to compare, store nothing."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in stream.file_chunks():
        size += len(chunk)
        if size > ctx.settings.max_media_bytes:
            raise ProblemError(ProblemCode.MEDIA_TOO_LARGE, "The media is larger than the limit.")
        digest.update(chunk)
    await stream.drain()
    options = await run_in_threadpool(_options_from_fields, ctx, stream.fields)
    return await run_in_threadpool(submitter.replay_upload, tenant, key, digest.hexdigest(), stream.filename, options)


@router.get(
    "/{job_id}",
    summary="A job's status",
    response_model=JobView,
    responses={
        200: {
            "description": "The job. With `wait`, answered when its status changes or after `wait` seconds.",
            "content": examples.json_examples(
                processing=("Processing, with stage and percent", examples.PROCESSING_JOB),
                succeeded=("Succeeded", examples.SUCCEEDED_JOB),
                failed=("Failed, with a stable error code", examples.FAILED_JOB),
            ),
        },
        **problem_responses(*_JOB_PROBLEMS),
    },
)
async def get_job(
    job_id: str,
    ctx: ContextDep,
    tenant: TenantDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            description="Long-poll: hold the request up to this many seconds (bounded by the server, "
            "30 by default) until the job's status changes.",
        ),
    ] = 0,
) -> Any:
    """Status (queued, processing with stage and percent, succeeded, failed with error, canceled) and times."""
    if wait > 0:
        job = await job_access.wait_for_status_change(ctx, job_id, tenant.id, wait)
    else:
        job = await run_in_threadpool(job_access.get_job, ctx, job_id, tenant.id)
    return public_job(job).document()


@router.get(
    "/{job_id}/result",
    summary="A finished job's result",
    response_model=ServedResult,
    responses={
        200: {
            "description": "The detection result; heatmap refs are presigned URLs valid for a few minutes.",
            "content": examples.json_example(examples.RESULT, "A video judged fake"),
        },
        **problem_responses(
            *_JOB_PROBLEMS, ProblemCode.JOB_NOT_FINISHED, ProblemCode.JOB_FAILED, ProblemCode.RESULT_MISSING
        ),
    },
)
async def get_result(job_id: str, ctx: ContextDep, tenant: TenantDep) -> Any:
    """The core's result document (verdict, score, face tracks, heatmaps); 409 until the job succeeded."""

    def load() -> dict[str, Any]:
        job = job_access.get_job(ctx, job_id, tenant.id)
        return job_access.result_document(ctx, job).model_dump(mode="json")

    return await run_in_threadpool(load)


@router.get(
    "",
    summary="List your jobs",
    response_model=JobPageView,
    responses={
        200: {"description": "Newest first.", "content": examples.json_example(examples.JOB_PAGE, "One page")},
        **problem_responses(*_AUTH_PROBLEMS, ProblemCode.INVALID_CURSOR, ProblemCode.VALIDATION_ERROR),
    },
)
async def list_jobs(
    ctx: ContextDep,
    tenant: TenantDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """The tenant's jobs, newest first, one page at a time."""

    def load() -> dict[str, Any]:
        try:
            page = ctx.store.list(tenant.id, status=status, cursor=cursor, limit=limit)
        except ValueError as error:
            raise ProblemError(ProblemCode.INVALID_CURSOR, str(error).capitalize() + ".") from error
        return JobPageView(jobs=[public_job(job) for job in page.jobs], next_cursor=page.next_cursor).model_dump(
            mode="json", by_alias=True
        )

    return await run_in_threadpool(load)


@router.delete(
    "/{job_id}",
    summary="Cancel a job and erase its data",
    response_model=JobView,
    responses={
        200: {
            "description": "The job as it ended (canceled if it was still running); its media, result and "
            "heatmaps are erased, and it is no longer found afterwards.",
            "content": examples.json_example({**examples.QUEUED_JOB, "status": "canceled"}, "Canceled and erased"),
        },
        **problem_responses(*_JOB_PROBLEMS),
    },
)
async def delete_job(job_id: str, ctx: ContextDep, tenant: TenantDep) -> Any:
    """Stop the job if it runs, then erase everything stored for it (media, intermediates, result, heatmaps)."""
    job = await run_in_threadpool(job_access.cancel_and_erase, ctx, job_id, tenant.id)
    return public_job(job).document()

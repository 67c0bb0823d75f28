"""/v1/uploads: presigned PUT URLs, so that large media goes straight to object storage, not through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from deepfake_gateway.api import examples
from deepfake_gateway.api.deps import ContextDep, TenantDep
from deepfake_gateway.core.problems import ProblemCode, problem_responses
from deepfake_gateway.views import UploadRequest, UploadView

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post(
    "",
    status_code=201,
    summary="Get a presigned URL to upload media",
    response_model=UploadView,
    responses={
        201: {
            "description": "PUT the media to upload_url (with the given headers), then POST /v1/jobs "
            '{"upload_id": ...}.',
            "content": examples.json_example(examples.UPLOAD, "A presigned upload"),
        },
        **problem_responses(ProblemCode.UNAUTHORIZED, ProblemCode.RATE_LIMITED, ProblemCode.VALIDATION_ERROR),
    },
)
async def create_upload(
    request: Request,
    ctx: ContextDep,
    tenant: TenantDep,
    upload: UploadRequest = Body(  # noqa: B008 - FastAPI's way to declare an optional body with examples
        default_factory=UploadRequest,
        openapi_examples={
            "video": {"summary": "A video", "value": {"filename": "clip.mp4", "content_type": "video/mp4"}}
        },
    ),
) -> Any:
    """A presigned PUT URL for one media file; the upload id becomes the job's id when it is submitted."""
    submitter = request.app.state.submitter
    upload_id, url, ttl = await run_in_threadpool(
        submitter.register_upload, tenant, upload.filename, upload.content_type
    )
    return UploadView(
        upload_id=upload_id,
        upload_url=url,
        headers={"Content-Type": upload.content_type},
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        max_bytes=ctx.settings.max_media_bytes,
    )

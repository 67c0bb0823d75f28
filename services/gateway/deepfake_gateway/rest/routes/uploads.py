"""/v1/uploads: presigned PUT URLs, so that large media goes straight to object storage, not through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from deepfake_gateway.problems import ProblemCode, problem_responses
from deepfake_gateway.rest import examples
from deepfake_gateway.rest.deps import ContextDep, TenantDep
from deepfake_gateway.rest.json_body import read_json
from deepfake_gateway.rest.schemas import UploadRequest, UploadView

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

# Declared by hand, not as a FastAPI `Body` parameter: FastAPI reads and parses a declared body before the API key
# is checked, so anyone could make the gateway buffer any amount of JSON (see deepfake_gateway.rest.json_body).
UPLOAD_REQUEST_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": UploadRequest.model_json_schema(),  # inline: main.py's components list no route's bodies
            "examples": {
                "video": {"summary": "A video", "value": {"filename": "clip.mp4", "content_type": "video/mp4"}}
            },
        }
    },
}


def _upload_request(document: Any) -> UploadRequest:
    if document is None:
        return UploadRequest()
    try:
        return UploadRequest.model_validate(document)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from error


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
        **problem_responses(
            ProblemCode.INVALID_BODY,
            ProblemCode.UNAUTHORIZED,
            ProblemCode.BODY_TOO_LARGE,
            ProblemCode.RATE_LIMITED,
            ProblemCode.VALIDATION_ERROR,
        ),
    },
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
)
async def create_upload(request: Request, ctx: ContextDep, tenant: TenantDep) -> Any:
    """A presigned PUT URL for one media file; the upload id becomes the job's id when it is submitted.

    The body is read only now, after the API key was checked, and at most `max_json_body_bytes` of it.
    """
    upload = _upload_request(await read_json(request, ctx.settings.max_json_body_bytes))
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

"""Every error the gateway answers is an RFC 9457 `application/problem+json` document with a stable `code`.

Routes raise `ProblemError(ProblemCode.X, detail)`; the handlers installed by `install_problem_handlers`
also turn FastAPI's own errors (422 validation, 404 unknown route, 405) into the same shape, so a client
switches on `code` everywhere and never parses prose.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:deepfake:problem:"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"  # added to the OpenAPI components by deepfake_gateway.main


class ProblemCode(StrEnum):
    """Stable error codes of the API; `status` is the HTTP status each one is answered with."""

    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    JOB_NOT_FOUND = "job_not_found"
    UPLOAD_NOT_FOUND = "upload_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    VALIDATION_ERROR = "validation_error"
    INVALID_BODY = "invalid_body"
    BODY_TOO_LARGE = "body_too_large"
    INVALID_SAMPLING = "invalid_sampling"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_URL = "invalid_url"
    URL_NOT_ALLOWED = "url_not_allowed"
    URL_UNRESOLVABLE = "url_unresolvable"
    METADATA_TOO_LARGE = "metadata_too_large"
    MEDIA_TOO_LARGE = "media_too_large"
    EMPTY_MEDIA = "empty_media"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    UPLOAD_ALREADY_SUBMITTED = "upload_already_submitted"
    JOB_NOT_FINISHED = "job_not_finished"
    JOB_FAILED = "job_failed"
    JOB_CANCELED = "job_canceled"
    RESULT_MISSING = "result_missing"
    HEATMAP_NOT_FOUND = "heatmap_not_found"
    RATE_LIMITED = "rate_limited"
    CONCURRENCY_LIMIT = "concurrency_limit"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    INTERNAL_ERROR = "internal_error"

    @property
    def status(self) -> int:
        return _STATUS[self]

    @property
    def title(self) -> str:
        return _TITLES[self]


_STATUS: dict[ProblemCode, int] = {
    ProblemCode.UNAUTHORIZED: 401,
    ProblemCode.NOT_FOUND: 404,
    ProblemCode.JOB_NOT_FOUND: 404,
    ProblemCode.UPLOAD_NOT_FOUND: 404,
    ProblemCode.METHOD_NOT_ALLOWED: 405,
    ProblemCode.VALIDATION_ERROR: 422,
    ProblemCode.INVALID_BODY: 400,
    ProblemCode.BODY_TOO_LARGE: 413,
    ProblemCode.INVALID_SAMPLING: 422,
    ProblemCode.INVALID_CURSOR: 422,
    ProblemCode.INVALID_URL: 422,
    ProblemCode.URL_NOT_ALLOWED: 422,
    ProblemCode.URL_UNRESOLVABLE: 422,
    ProblemCode.METADATA_TOO_LARGE: 422,
    ProblemCode.MEDIA_TOO_LARGE: 413,
    ProblemCode.EMPTY_MEDIA: 422,
    ProblemCode.UNSUPPORTED_CONTENT_TYPE: 415,
    ProblemCode.IDEMPOTENCY_CONFLICT: 409,
    ProblemCode.IDEMPOTENCY_IN_PROGRESS: 409,
    ProblemCode.UPLOAD_ALREADY_SUBMITTED: 409,
    ProblemCode.JOB_NOT_FINISHED: 409,
    ProblemCode.JOB_FAILED: 409,
    ProblemCode.JOB_CANCELED: 409,
    ProblemCode.RESULT_MISSING: 404,
    ProblemCode.HEATMAP_NOT_FOUND: 404,
    ProblemCode.RATE_LIMITED: 429,
    ProblemCode.CONCURRENCY_LIMIT: 429,
    ProblemCode.OVERLOADED: 503,
    ProblemCode.NOT_READY: 503,
    ProblemCode.INTERNAL_ERROR: 500,
}

_TITLES: dict[ProblemCode, str] = {
    ProblemCode.UNAUTHORIZED: "Missing or invalid API key",
    ProblemCode.NOT_FOUND: "Not found",
    ProblemCode.JOB_NOT_FOUND: "Job not found",
    ProblemCode.UPLOAD_NOT_FOUND: "Upload not found",
    ProblemCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ProblemCode.VALIDATION_ERROR: "Invalid request",
    ProblemCode.INVALID_BODY: "Malformed request body",
    ProblemCode.BODY_TOO_LARGE: "Request body too large",
    ProblemCode.INVALID_SAMPLING: "Invalid sampling",
    ProblemCode.INVALID_CURSOR: "Invalid cursor",
    ProblemCode.INVALID_URL: "Invalid URL",
    ProblemCode.URL_NOT_ALLOWED: "URL not allowed",
    ProblemCode.URL_UNRESOLVABLE: "URL host cannot be resolved",
    ProblemCode.METADATA_TOO_LARGE: "Metadata too large",
    ProblemCode.MEDIA_TOO_LARGE: "Media too large",
    ProblemCode.EMPTY_MEDIA: "Empty media",
    ProblemCode.UNSUPPORTED_CONTENT_TYPE: "Unsupported content type",
    ProblemCode.IDEMPOTENCY_CONFLICT: "Idempotency key reused with a different request",
    ProblemCode.IDEMPOTENCY_IN_PROGRESS: "Request with this idempotency key still in progress",
    ProblemCode.UPLOAD_ALREADY_SUBMITTED: "Upload already submitted",
    ProblemCode.JOB_NOT_FINISHED: "Job not finished",
    ProblemCode.JOB_FAILED: "Job failed",
    ProblemCode.JOB_CANCELED: "Job canceled",
    ProblemCode.RESULT_MISSING: "Result missing",
    ProblemCode.HEATMAP_NOT_FOUND: "Heatmap not found",
    ProblemCode.RATE_LIMITED: "Rate limit exceeded",
    ProblemCode.CONCURRENCY_LIMIT: "Too many jobs in progress",
    ProblemCode.OVERLOADED: "Service overloaded",
    ProblemCode.NOT_READY: "Service not ready",
    ProblemCode.INTERNAL_ERROR: "Internal error",
}

# Errors of FastAPI/Starlette that carry only a status; mapped to our codes.
_CODE_FOR_STATUS: dict[int, ProblemCode] = {
    400: ProblemCode.INVALID_BODY,  # FastAPI's "There was an error parsing the body"
    401: ProblemCode.UNAUTHORIZED,
    404: ProblemCode.NOT_FOUND,
    405: ProblemCode.METHOD_NOT_ALLOWED,
    413: ProblemCode.MEDIA_TOO_LARGE,
    415: ProblemCode.UNSUPPORTED_CONTENT_TYPE,
    422: ProblemCode.VALIDATION_ERROR,
    429: ProblemCode.RATE_LIMITED,
    503: ProblemCode.OVERLOADED,
}


class Problem(BaseModel):
    """The problem document (RFC 9457) with our stable `code`."""

    type: str = Field(description="A URN naming the problem kind: urn:deepfake:problem:<code>.")
    title: str = Field(description="Short summary of the problem kind; the same for every occurrence.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time, and what to do about it.")
    code: str = Field(description="Stable machine-readable code; switch on this, not on the text.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Field errors (validation only).")
    retry_after_s: int | None = Field(default=None, description="When to retry (429, 503); also a header.")


class ProblemError(Exception):
    """Raise from a route or dependency to answer with a problem document."""

    def __init__(
        self,
        code: ProblemCode,
        detail: str,
        *,
        retry_after_s: float | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        self.retry_after_s = None if retry_after_s is None else max(1, int(retry_after_s + 0.999))
        self.errors = errors
        self.headers = dict(headers or {})

    def to_problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_PREFIX + self.code.value,
            title=self.code.title,
            status=self.code.status,
            detail=self.detail,
            code=self.code.value,
            instance=instance,
            errors=self.errors,
            retry_after_s=self.retry_after_s,
        )


def problem_response(error: ProblemError, instance: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.code is ProblemCode.UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="deepfake"')
    body = error.to_problem(instance).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=error.code.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Field errors without the echoed input (which could be a large or secret value)."""
    return [
        {"loc": [str(part) for part in item.get("loc", ())], "msg": item.get("msg", ""), "type": item.get("type", "")}
        for item in error.errors()
    ]


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(item['loc'][1:] or item['loc']) or 'body'}: {item['msg']}" for item in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "The request is invalid: " + "; ".join(parts) + more + "."


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through one shape."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(error, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(error)
        return problem_response(
            ProblemError(ProblemCode.VALIDATION_ERROR, _describe(errors), errors=errors), request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _CODE_FOR_STATUS.get(error.status_code, ProblemCode.INTERNAL_ERROR)
        detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
        if code is ProblemCode.NOT_FOUND and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}; see /docs for the API."
        elif code is ProblemCode.METHOD_NOT_ALLOWED:
            allow = _allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allow)}."
            error.headers = {**(error.headers or {}), "Allow": ", ".join(allow)}
        response = problem_response(ProblemError(code, detail, headers=dict(error.headers or {})), request.url.path)
        if error.status_code != code.status:
            response.status_code = error.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        import logging

        logging.getLogger("deepfake_gateway").exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            ProblemError(ProblemCode.INTERNAL_ERROR, "An unexpected error occurred; it has been logged. Try again."),
            request.url.path,
        )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts at this path (Starlette's Allow names only the first route's)."""
    candidates = ("GET", "POST", "PUT", "PATCH", "DELETE")
    allowed = [
        method
        for method in candidates
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]
    return allowed or ["GET"]


def problem_responses(*codes: ProblemCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route may answer, each with an example."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        example = ProblemError(code, _EXAMPLE_DETAILS.get(code, code.title + ".")).to_problem("/v1/jobs")
        entry = responses.setdefault(
            code.status,
            {
                "description": code.title,
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}, "examples": {}}},
            },
        )
        if entry["description"] != code.title:
            entry["description"] += f" / {code.title}"
        entry["content"][PROBLEM_MEDIA_TYPE]["examples"][code.value] = {
            "summary": code.title,
            "value": example.model_dump(exclude_none=True),
        }
    return responses


_EXAMPLE_DETAILS: dict[ProblemCode, str] = {
    ProblemCode.UNAUTHORIZED: "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
    ProblemCode.JOB_NOT_FOUND: "No job 3f2a... exists for this API key.",
    ProblemCode.RATE_LIMITED: "More than 600 requests in the last minute; retry after 3 s.",
    ProblemCode.CONCURRENCY_LIMIT: "50 jobs are already queued or processing; wait for one to finish.",
    ProblemCode.OVERLOADED: "The job queue is full; retry after 5 s.",
    ProblemCode.IDEMPOTENCY_CONFLICT: "Idempotency-Key 'abc' was used with a different request body.",
    ProblemCode.JOB_NOT_FINISHED: "The job is 'processing' (inference, 60%); poll GET /v1/jobs/{id} first.",
    ProblemCode.URL_NOT_ALLOWED: "http://10.0.0.5/x resolves to a private address; use a public URL.",
    ProblemCode.MEDIA_TOO_LARGE: "The media is larger than the limit of 536870912 bytes; send a smaller file.",
}

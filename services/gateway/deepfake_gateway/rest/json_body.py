"""Reading a JSON request body under a size cap, after the caller is authenticated, into a problem on any error.

Routes that take JSON read it here instead of declaring a FastAPI `Body` parameter: FastAPI reads and parses a
declared body before it runs the route's dependencies, so an unauthenticated client could make the gateway buffer
and parse any amount of JSON only to be answered 401. Called from the route body, this runs after `TenantDep`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from deepfake_gateway.problems import ProblemCode, ProblemError


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        ProblemCode.BODY_TOO_LARGE,
        f"The JSON body is larger than {limit} bytes; send a smaller document (media goes to the upload URL).",
    )


async def read_body_capped(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) a declared or streamed size past `limit` before buffering more of it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """The decoded document; malformed or absurdly nested JSON is a 400 `invalid_body`, never a 500."""
    try:
        return json.loads(body)
    except RecursionError as error:
        raise ProblemError(
            ProblemCode.INVALID_BODY, "The JSON body is nested too deeply; send a flatter document."
        ) from error
    except ValueError as error:
        raise ProblemError(ProblemCode.INVALID_BODY, f"The body is not valid JSON: {error}.") from error


async def read_json(request: Request, limit: int, *, empty: Any = None) -> Any:
    """The JSON body (`empty` when there is none), capped at `limit` bytes."""
    body = await read_body_capped(request, limit)
    if not body.strip():
        return empty
    return parse_json(body)

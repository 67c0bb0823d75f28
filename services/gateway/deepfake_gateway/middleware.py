"""ASGI middleware of the gateway: request latency by route template, and the rate-limit headers.

Pure ASGI (not BaseHTTPMiddleware), so that streamed upload bodies pass through untouched and the
overhead per request stays a few microseconds.
"""

from __future__ import annotations

import time
from typing import Any

from deepfake_jobs.metrics import HTTP_REQUEST_DURATION
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_gateway.api.deps import RATE_HEADERS_STATE

UNMATCHED_ROUTE = "unmatched"  # every path no route matches shares one label: raw paths would explode cardinality


def route_template(scope: Scope) -> str:
    """The matched route's path template (/v1/jobs/{job_id}), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class GatewayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = state.get(RATE_HEADERS_STATE)
                if extra:
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    for name, value in extra.items():
                        if name.lower().encode() not in present:
                            headers.append((name.lower().encode(), value.encode()))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            HTTP_REQUEST_DURATION.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )

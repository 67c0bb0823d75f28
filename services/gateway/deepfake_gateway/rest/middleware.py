"""The gateway's one ASGI middleware: request latency by route template, the rate-limit headers, and the security
headers (the console's Content-Security-Policy on its pages and assets, `nosniff` on every response).

Pure ASGI (not BaseHTTPMiddleware), so that streamed upload bodies pass through untouched and the overhead per
request stays a few microseconds. One middleware rather than one per concern: every header a response gets is
decided here, in one pass over the response start.
"""

from __future__ import annotations

import time
from typing import Any

from deepfake_jobs.metrics import HTTP_REQUEST_DURATION
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_gateway.rest.console.pages import is_console_path
from deepfake_gateway.rest.deps import RATE_HEADERS_STATE

UNMATCHED_ROUTE = "unmatched"  # every path no route matches shares one label: raw paths would explode cardinality

# The console allows no inline script and no third-party origin.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

CONSOLE_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    # Revalidate every time (ETag/Last-Modified make that cheap): a redeployed console is never served stale
    # next to a newer API, without versioned file names.
    "cache-control": "no-cache",
}
# API responses (JSON, problem+json, PNG) get only this, which is right for any response.
EVERY_RESPONSE_HEADERS: dict[str, str] = {"x-content-type-options": "nosniff"}


def route_template(scope: Scope) -> str:
    """The matched route's path template (/v1/jobs/{job_id}), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def add_missing_headers(message: Message, extra: dict[str, str]) -> None:
    """Append `extra` to a response start message, leaving any header the route set itself as it is."""
    headers = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    for name, value in extra.items():
        if name.lower().encode() not in present:
            headers.append((name.lower().encode(), value.encode()))
    message["headers"] = headers


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
        security = CONSOLE_HEADERS if is_console_path(scope.get("path", "")) else EVERY_RESPONSE_HEADERS

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Set by the authentication dependency once the request was counted against the rate limit.
                add_missing_headers(message, state.get(RATE_HEADERS_STATE) or {})
                add_missing_headers(message, security)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            HTTP_REQUEST_DURATION.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )

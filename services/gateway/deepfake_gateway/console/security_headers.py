"""Security headers of the console's pages and assets: a Content-Security-Policy that allows no inline script and
no third-party origin, plus no sniffing, no framing, no referrer and no powerful browser features.

Pure ASGI like the gateway's own middleware, so streamed API uploads pass through untouched; API responses
(JSON, problem+json, PNG) get only `X-Content-Type-Options`, which is right for any response.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_PATH = "/console"

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
EVERY_RESPONSE_HEADERS: dict[str, str] = {"x-content-type-options": "nosniff"}


def is_console_path(path: str) -> bool:
    """The console's pages and assets, and the root that redirects to them."""
    return path == "/" or path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _with_headers(message: Message, extra: dict[str, str]) -> Message:
    headers = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    for name, value in extra.items():
        if name.encode() not in present:
            headers.append((name.encode(), value.encode()))
    message["headers"] = headers
    return message


class ConsoleSecurityHeaders:
    """Adds CONSOLE_HEADERS to console responses and `nosniff` to every other HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = CONSOLE_HEADERS if is_console_path(scope.get("path", "")) else EVERY_RESPONSE_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

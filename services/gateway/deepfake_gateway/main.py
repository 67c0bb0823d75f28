"""The gateway application, its one app module: the FastAPI app with its lifespan (shared context, gRPC server),
middleware, problem handlers, every REST router (rest/routes/), the OpenAPI description and the web console
(`/console`, rest/console/). Run it with `uvicorn deepfake_gateway.main:app` or `deepfake-gateway` (same thing, host
and port from DEEPFAKE_HTTP_HOST / DEEPFAKE_HTTP_PORT).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from deepfake_jobs.metrics import QueueDepthCollector, multiprocess_enabled
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import REGISTRY

from deepfake_gateway import __version__
from deepfake_gateway.context import DEPENDENCY_ERRORS, GatewayContext, dependency_problem
from deepfake_gateway.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    ProblemCode,
    install_problem_handlers,
    problem_response,
    problem_responses,
)
from deepfake_gateway.rest.console.pages import install_console
from deepfake_gateway.rest.middleware import GatewayMiddleware
from deepfake_gateway.rest.routes import health, heatmaps, jobs, uploads, webhooks
from deepfake_gateway.rest.routes.jobs import SUBMIT_MULTIPART_SCHEMA
from deepfake_gateway.rest.schemas import SubmitJson
from deepfake_gateway.settings import GatewaySettings, get_settings
from deepfake_gateway.submission import Submitter

log = logging.getLogger("deepfake_gateway")

DESCRIPTION = """\
Asynchronous deepfake detection. Submit an image or a video (`POST /v1/jobs`), follow the job
(`GET /v1/jobs/{id}`, optionally long-polling with `?wait=30`), then read the verdict with per-face scores and
Grad-CAM heatmaps (`GET /v1/jobs/{id}/result`), or receive it as a signed webhook at `callback_url`.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error is an
`application/problem+json` document whose `code` is stable. The same API is served over gRPC
(`deepfake.v1.DetectionService`, see proto/).
"""

_queue_collector_registered = False


def _register_queue_depth(ctx: GatewayContext) -> None:
    """The queue-depth gauge on the default registry (multiprocess mode adds it per scrape instead)."""
    global _queue_collector_registered
    if not _queue_collector_registered and not multiprocess_enabled():  # process-wide; tests build several apps
        REGISTRY.register(QueueDepthCollector(ctx.store, ctx.settings.queues))
        _queue_collector_registered = True


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = GatewayContext.from_settings(settings)
        submitter = Submitter(ctx)
        app.state.context = ctx
        app.state.submitter = submitter
        _register_queue_depth(ctx)
        grpc_server = None
        if settings.grpc_enabled:
            from deepfake_gateway.grpc.server import GrpcServer

            grpc_server = GrpcServer(ctx, submitter)
            await grpc_server.start()
            app.state.grpc_port = grpc_server.port
        log.info("gateway ready (tenants from file: %d)", len(ctx.tenants.file_tenants))
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            ctx.close()

    app = FastAPI(
        title="Deepfake detection API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "jobs", "description": "Submit media and follow jobs."},
            {"name": "uploads", "description": "Presigned uploads for large media."},
            {"name": "webhooks", "description": "Signed notifications and their delivery log."},
            {"name": "health", "description": "Probes and metrics."},
        ],
    )
    app.add_middleware(GatewayMiddleware)
    install_problem_handlers(app)

    async def dependency_down(request: Request, error: Exception) -> Response:
        log.warning("%s %s: backing service failed: %r", request.method, request.url.path, error)
        return problem_response(dependency_problem(error), request.url.path)

    for error_class in DEPENDENCY_ERRORS:
        app.add_exception_handler(error_class, dependency_down)
    for resource in (health, uploads, jobs, webhooks, heatmaps):
        app.include_router(resource.router)
    install_console(app)  # /console, and / redirecting there
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the submit body schemas, API-key security and problem+json for 422s."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    submit_json = SubmitJson.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(submit_json.pop("$defs", {}))
    schemas["SubmitJson"] = submit_json
    schemas["SubmitMultipart"] = SUBMIT_MULTIPART_SCHEMA
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    validation = problem_responses(ProblemCode.VALIDATION_ERROR)[422]
    validation_content = validation["content"]
    for path, operations in schema.get("paths", {}).items():
        public = path in ("/healthz", "/readyz", "/metrics")
        for operation in operations.values():
            operation["security"] = [] if public else [{"bearer": []}, {"apiKey": []}]
            responses = operation.get("responses", {})
            if "422" in responses and PROBLEM_MEDIA_TYPE not in responses["422"].get("content", {}):
                # FastAPI documents its own {"detail": [...]} shape; ours is a problem
                responses["422"] = {
                    "description": responses["422"].get("description", "Invalid request"),
                    "content": validation_content,
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = schema
    return schema


app = create_app()


def run() -> None:  # pragma: no cover - the console script
    import uvicorn

    settings = get_settings()
    uvicorn.run("deepfake_gateway.main:app", host=settings.http_host, port=settings.http_port, proxy_headers=True)

"""Probes and metrics: /healthz (the process answers), /readyz (what accepting jobs needs answers), /metrics.

Ready means the API can take jobs: Redis (job records, the queue) and object storage (uploads) answer. Inference
(Triton, or the ONNX model file) is reported in the readiness body but never gates it: while Triton restarts,
jobs wait in their queue and the inference workers retry, so the API stays up.

/readyz answers anyone (kubelets and load balancers send no key), but why a check fails names hosts and
filesystem paths: those reasons go only to a caller with a valid API key; others see `unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from deepfake_core.errors import DetectionError
from deepfake_core.model_files import resolve_model_path
from deepfake_core.settings import CoreSettings
from deepfake_jobs.metrics import QueueDepthCollector, multiprocess_registry
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from deepfake_gateway.auth import MAX_KEY_LENGTH, api_key_from
from deepfake_gateway.context import GatewayContext
from deepfake_gateway.problems import PROBLEM_MEDIA_TYPE, ProblemCode, ProblemError, problem_responses
from deepfake_gateway.rest import examples
from deepfake_gateway.rest.deps import ContextDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    info: dict[str, str] = {}


def check_redis(ctx: GatewayContext) -> str | None:
    return None if ctx.store.ping() else f"Redis at {ctx.settings.redis_url.rsplit('@', 1)[-1]} does not answer"


def check_object_storage(ctx: GatewayContext) -> str | None:
    if ctx.objects.ready():
        return None
    return f"object storage at {ctx.settings.s3_host} does not answer or has no bucket '{ctx.objects.bucket}'"


def check_inference(ctx: GatewayContext) -> str | None:
    """Triton is ready (triton backend), or the ONNX model file the workers load exists (onnxruntime; only the path
    is checked, so the gateway needs no onnxruntime)."""
    settings = ctx.settings
    if settings.inference_backend == "triton":
        import tritonclient.grpc as triton

        client = triton.InferenceServerClient(settings.triton_url)
        try:
            if client.is_server_ready(client_timeout=settings.readiness_timeout_s) and client.is_model_ready(
                settings.triton_model_name, settings.triton_model_version, client_timeout=settings.readiness_timeout_s
            ):
                return None
            return f"Triton at {settings.triton_url} is not ready to serve {settings.triton_model_name}"
        except Exception as error:  # noqa: BLE001 - any failure means not ready; the reason is reported
            return f"Triton at {settings.triton_url} does not answer: {type(error).__name__}"
        finally:
            client.close()
    try:
        path = resolve_model_path(CoreSettings())
    except DetectionError as error:
        return error.message
    return None if path.is_file() else f"no ONNX model file at {path}"


# What accepting a job needs: the readiness probe fails when one of these fails.
REQUIRED_CHECKS = {"redis": check_redis, "object_storage": check_object_storage}
# Reported under "info" only: the workers depend on them, the API does not.
INFORMATIONAL_CHECKS = {"inference": check_inference}
CHECKS = {**REQUIRED_CHECKS, **INFORMATIONAL_CHECKS}
UNDISCLOSED_FAILURE = "unavailable"


def _may_see_reasons(ctx: GatewayContext, request: Request) -> bool:
    """A valid API key (not counted against its rate limit: probes must never be throttled)."""
    key = api_key_from(request.headers.get)
    return bool(key) and len(key or "") <= MAX_KEY_LENGTH and ctx.tenants.authenticate(key or "") is not None


@router.get(
    "/healthz",
    summary="Liveness",
    response_model=Health,
    responses={200: {"content": examples.json_example({"status": "ok"})}},
)
async def healthz() -> Health:
    """The process serves requests (checks nothing else, so a dependency outage never restarts it)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Readiness,
    responses={
        200: {
            "content": examples.json_example(
                {"status": "ready", "checks": {"redis": "ok", "object_storage": "ok"}, "info": {"inference": "ok"}}
            )
        },
        **problem_responses(ProblemCode.NOT_READY),
    },
)
async def readyz(request: Request, ctx: ContextDep) -> Any:
    """Redis and object storage answer (503 names what does not); inference is reported under `info`.

    Why a check fails (hosts, paths) is shown only with a valid API key; without one it reads `unavailable`.
    """
    timeout = ctx.settings.readiness_timeout_s

    async def run(name: str) -> tuple[str, str | None]:
        try:
            failure = await asyncio.wait_for(asyncio.to_thread(CHECKS[name], ctx), timeout + 1)
        except TimeoutError:
            failure = f"no answer within {timeout + 1:.0f} s"
        except Exception as error:  # noqa: BLE001 - a probe reports, it does not raise
            log.warning("readiness check %s failed", name, exc_info=True)
            failure = f"{type(error).__name__}: {error}"
        return name, failure

    # All at once: an informational check never makes the probe slower than the slowest required one would.
    results = dict(await asyncio.gather(*(run(name) for name in CHECKS)))
    detailed = await run_in_threadpool(_may_see_reasons, ctx, request)
    outcome = {
        name: "ok" if failure is None else (failure if detailed else UNDISCLOSED_FAILURE)
        for name, failure in results.items()
    }
    checks = {name: outcome[name] for name in REQUIRED_CHECKS}
    info = {name: outcome[name] for name in INFORMATIONAL_CHECKS}
    failed = [name for name in REQUIRED_CHECKS if results[name] is not None]
    if not failed:
        return Readiness(status="ready", checks=checks, info=info)
    problem = ProblemError(
        ProblemCode.NOT_READY, "Not ready: " + "; ".join(f"{name}: {checks[name]}" for name in failed) + "."
    ).to_problem("/readyz")
    body = {**problem.model_dump(exclude_none=True), "checks": checks, "failed": failed, "info": info}
    return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": "deepfake_http_request_duration_seconds_bucket"
                    '{le="0.005",method="GET",route="/v1/jobs/{job_id}",status="200"} 3.0'
                }
            }
        }
    },
)
async def metrics(ctx: ContextDep) -> Response:
    """Request latency by route template (deepfake_http_request_duration_seconds), queue depth, and more."""
    registry = multiprocess_registry()
    if registry is not REGISTRY:  # one registry per scrape, merging every process's files: add the live gauge
        registry.register(QueueDepthCollector(ctx.store, ctx.settings.queues))
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""The gRPC face of the API (deepfake.v1.DetectionService), served beside REST from the same process.

Same tenants, keys, limits and jobs as REST: every call authenticates from metadata (`authorization:
Bearer <key>` or `x-api-key`), counts against the rate limit, and goes through the same Submitter and job
functions. A refusal carries the REST problem code in the `deepfake-problem-code` trailing metadata.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import grpc
from deepfake_jobs.tenants import Tenant
from deepfake_jobs.views import public_job
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from starlette.concurrency import run_in_threadpool

from deepfake_gateway import job_access
from deepfake_gateway.auth import api_key_from, authenticate
from deepfake_gateway.context import DEPENDENCY_ERRORS, GatewayContext, dependency_problem
from deepfake_gateway.grpc.proto import job_pb2, result_pb2, service_pb2, service_pb2_grpc, to_message
from deepfake_gateway.problems import ProblemCode, ProblemError
from deepfake_gateway.submission import Submitted, Submitter, build_options, check_idempotency_key

log = logging.getLogger(__name__)

PROBLEM_CODE_METADATA = "deepfake-problem-code"
RETRY_AFTER_METADATA = "retry-after"

_STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
_CONFLICT_CODES: dict[ProblemCode, grpc.StatusCode] = {
    ProblemCode.IDEMPOTENCY_CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    ProblemCode.UPLOAD_ALREADY_SUBMITTED: grpc.StatusCode.ALREADY_EXISTS,
    ProblemCode.IDEMPOTENCY_IN_PROGRESS: grpc.StatusCode.ABORTED,
}


def grpc_status(code: ProblemCode) -> grpc.StatusCode:
    """The gRPC status of a problem: 409s that are preconditions (job not finished) are FAILED_PRECONDITION."""
    if code in _CONFLICT_CODES:
        return _CONFLICT_CODES[code]
    if code.status == 409:
        return grpc.StatusCode.FAILED_PRECONDITION
    return _STATUS_CODES.get(code.status, grpc.StatusCode.UNKNOWN)


async def _abort(context: grpc.aio.ServicerContext, error: ProblemError) -> NoReturn:
    """End the call with the problem's status, detail and code (`context.abort` raises)."""
    metadata: list[tuple[str, str]] = [(PROBLEM_CODE_METADATA, error.code.value)]
    if error.retry_after_s is not None:
        metadata.append((RETRY_AFTER_METADATA, str(error.retry_after_s)))
    await context.abort(grpc_status(error.code), error.detail, trailing_metadata=tuple(metadata))
    raise AssertionError("grpc.aio context.abort returned")


@asynccontextmanager
async def problems_as_status(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """A refusal (ProblemError) or a backing service's failure (503 not_ready) inside ends the call with the
    status, detail and problem code REST would answer."""
    try:
        yield
    except ProblemError as error:
        await _abort(context, error)
    except DEPENDENCY_ERRORS as error:
        log.warning("gRPC call failed on a backing service: %r", error)
        await _abort(context, dependency_problem(error))


def job_message(job: Any) -> job_pb2.Job:
    return to_message(public_job(job).document(), job_pb2.Job)


class DetectionServicer(service_pb2_grpc.DetectionServiceServicer):
    def __init__(self, ctx: GatewayContext, submitter: Submitter) -> None:
        self.ctx = ctx
        self.submitter = submitter

    async def _tenant(self, context: grpc.aio.ServicerContext) -> Tenant:
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}

        def admit() -> Tenant:
            tenant = authenticate(self.ctx.tenants, api_key_from(metadata.get))
            self.ctx.admit_request(tenant)
            return tenant

        return await run_in_threadpool(admit)

    async def Submit(self, request: service_pb2.SubmitRequest, context: grpc.aio.ServicerContext) -> job_pb2.Job:  # noqa: N802
        async with problems_as_status(context):
            tenant = await self._tenant(context)
            submitted = await self._submit(tenant, request)
        if submitted.replayed:
            await context.send_initial_metadata((("idempotent-replayed", "true"),))
        return job_message(submitted.job)

    async def _submit(self, tenant: Tenant, request: service_pb2.SubmitRequest) -> Submitted:
        key = check_idempotency_key(request.idempotency_key if request.HasField("idempotency_key") else None)
        proto_options = request.options
        metadata = json_format.MessageToDict(proto_options.metadata) if proto_options.HasField("metadata") else {}
        priority = job_pb2.Priority.Name(proto_options.priority).removeprefix("PRIORITY_").lower()
        options_kwargs: dict[str, Any] = {
            "callback_url": proto_options.callback_url if proto_options.HasField("callback_url") else None,
            "metadata": metadata,
            "priority": None if priority == "unspecified" else priority,
            "sampling": proto_options.sampling if proto_options.HasField("sampling") else None,
            # proto3 bools have no presence: an unset options message means the default (explain on).
            "explain": proto_options.explain if request.HasField("options") else None,
        }
        media = request.WhichOneof("media")
        if media is None:
            raise ProblemError(ProblemCode.VALIDATION_ERROR, "Set one of content, media_url or upload_id.")
        submitter = self.submitter

        def submit_reference() -> Submitted:
            options = build_options(self.ctx, **options_kwargs)
            if media == "media_url":
                return submitter.submit_url(tenant, request.media_url, options, key)
            return submitter.submit_presigned(tenant, request.upload_id, options, key)

        if media != "content":
            return await run_in_threadpool(submit_reference)

        filename = request.filename if request.HasField("filename") else None
        content_type = request.content_type if request.HasField("content_type") else None

        def submit_content() -> Submitted:
            options = build_options(self.ctx, **options_kwargs)
            if key is not None and submitter.key_is_bound(tenant, key):
                digest = hashlib.sha256(request.content).hexdigest()
                return submitter.replay_upload(tenant, key, digest, filename, options)
            job_id, reservation = submitter.begin_upload(tenant)
            try:
                stored = submitter.store_upload(job_id, tenant, io.BytesIO(request.content), content_type)
            except BaseException:
                submitter.abandon_upload(tenant, job_id, reservation)
                raise
            return submitter.finish_upload(tenant, job_id, stored, options, key, reservation, filename, content_type)

        return await run_in_threadpool(submit_content)

    async def Get(self, request: service_pb2.GetRequest, context: grpc.aio.ServicerContext) -> job_pb2.Job:  # noqa: N802
        async with problems_as_status(context):
            tenant = await self._tenant(context)
            job = await run_in_threadpool(job_access.get_job, self.ctx, request.id, tenant.id)
        return job_message(job)

    async def Watch(  # noqa: N802
        self, request: service_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[job_pb2.Job]:
        async with problems_as_status(context):
            tenant = await self._tenant(context)
            async for job in job_access.watch(self.ctx, request.id, tenant.id):
                yield job_message(job)

    async def GetResult(  # noqa: N802
        self, request: service_pb2.GetResultRequest, context: grpc.aio.ServicerContext
    ) -> result_pb2.Result:
        async with problems_as_status(context):
            tenant = await self._tenant(context)

            def load() -> dict[str, Any]:
                job = job_access.get_job(self.ctx, request.id, tenant.id)
                return job_access.result_document(self.ctx, job).model_dump(mode="json")

            document = await run_in_threadpool(load)
        return to_message(document, result_pb2.Result)


SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["DetectionService"].full_name


class GrpcServer:
    """A grpc.aio server on the running event loop; started and stopped by the app's lifespan.

    It also serves the standard `grpc.health.v1.Health` service (Kubernetes `grpc` probes, grpc-health-probe,
    load balancers): SERVING while it runs, NOT_SERVING from the start of a shutdown so that balancers stop
    sending calls while the running ones finish.
    """

    def __init__(self, ctx: GatewayContext, submitter: Submitter) -> None:
        limit = ctx.settings.grpc_max_message_bytes
        self._server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        )
        service_pb2_grpc.add_DetectionServiceServicer_to_server(DetectionServicer(ctx, submitter), self._server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = self._server.add_insecure_port(f"{ctx.settings.grpc_host}:{ctx.settings.grpc_port}")
        if self.port == 0:
            raise RuntimeError(f"gRPC could not listen on {ctx.settings.grpc_host}:{ctx.settings.grpc_port}.")

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):  # "" is the whole server
            await self.health.set(name, status)

    async def start(self) -> None:
        await self._server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC DetectionService listening on port %d", self.port)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)

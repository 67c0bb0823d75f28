"""Dependencies of the REST routes: the shared context and the authenticated, rate-limited tenant."""

from __future__ import annotations

from typing import Annotated

from deepfake_jobs.tenants import Tenant
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from deepfake_gateway.auth import api_key_from, authenticate
from deepfake_gateway.context import GatewayContext
from deepfake_gateway.ratelimit import RateDecision

RATE_HEADERS_STATE = "rate_limit_headers"


def get_context(request: Request) -> GatewayContext:
    return request.app.state.context


ContextDep = Annotated[GatewayContext, Depends(get_context)]


def _authenticate_and_count(ctx: GatewayContext, api_key: str | None) -> tuple[Tenant, RateDecision]:
    tenant = authenticate(ctx.tenants, api_key)
    return tenant, ctx.admit_request(tenant)


async def current_tenant(request: Request, ctx: ContextDep) -> Tenant:
    """The caller's tenant (401 without a valid key), after counting the request against its rate limit (429)."""
    tenant, decision = await run_in_threadpool(_authenticate_and_count, ctx, api_key_from(request.headers.get))
    # The middleware copies these onto the response, whatever the route returns.
    setattr(request.state, RATE_HEADERS_STATE, decision.headers())
    request.state.tenant_id = tenant.id
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]

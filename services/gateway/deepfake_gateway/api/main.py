"""All REST routers under one `api_router`; a reader finds any endpoint from its URL in api/routes/."""

from __future__ import annotations

from fastapi import APIRouter

from deepfake_gateway.api.routes import health, jobs, uploads, webhooks

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(uploads.router)
api_router.include_router(jobs.router)
api_router.include_router(webhooks.router)

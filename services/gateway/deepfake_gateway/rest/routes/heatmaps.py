"""`GET /v1/jobs/{job_id}/tracks/{track_id}/heatmaps/{frame_index}`: one Grad-CAM PNG of a finished job, from the
gateway's own origin.

The result document links heatmaps as presigned object-storage URLs, which live on another origin; a page whose
Content-Security-Policy allows images from 'self' only (the console) cannot show them, and a script cannot read
them either. This route serves the same bytes to any API client, authenticated like every other /v1 route.
A frame without that heatmap is `heatmap_not_found`; a result that is gone altogether stays `result_missing`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from deepfake_core.result import DetectionResult, Heatmap
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from deepfake_gateway import job_access
from deepfake_gateway.context import GatewayContext
from deepfake_gateway.problems import ProblemCode, ProblemError, problem_responses
from deepfake_gateway.rest.deps import ContextDep, TenantDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

HeatmapKind = Literal["face", "frame"]


def find_heatmap(result: DetectionResult, track_id: int, frame_index: int, kind: HeatmapKind) -> Heatmap | None:
    for track in result.tracks:
        if track.track_id == track_id:
            for heatmap in track.heatmaps:
                if heatmap.frame_index == frame_index and heatmap.kind == kind and heatmap.ref:
                    return heatmap
    return None


def load_heatmap_png(
    ctx: GatewayContext, job_id: str, tenant_id: str, track_id: int, frame_index: int, kind: HeatmapKind
) -> bytes:
    job = job_access.get_job(ctx, job_id, tenant_id)
    heatmap = find_heatmap(job_access.stored_result(ctx, job), track_id, frame_index, kind)
    key = job_access.object_key(ctx, heatmap.ref) if heatmap else None
    if key is None or not ctx.objects.exists(key):
        raise ProblemError(
            ProblemCode.HEATMAP_NOT_FOUND,
            f"Job {job.id} has no {kind} heatmap for track {track_id} at frame {frame_index}; the result's "
            "tracks[].heatmaps list the frames that have one.",
        )
    return ctx.objects.get_bytes(key)


@router.get(
    "/{job_id}/tracks/{track_id}/heatmaps/{frame_index}",
    summary="One Grad-CAM heatmap of a finished job (PNG)",
    response_class=Response,
    responses={
        200: {
            "description": "The heatmap overlay.",
            "content": {
                "image/png": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "(PNG bytes: the heatmap blended over the frame or the aligned face)",
                }
            },
        },
        **problem_responses(
            ProblemCode.UNAUTHORIZED,
            ProblemCode.RATE_LIMITED,
            ProblemCode.JOB_NOT_FOUND,
            ProblemCode.JOB_NOT_FINISHED,
            ProblemCode.JOB_FAILED,
            ProblemCode.JOB_CANCELED,
            ProblemCode.RESULT_MISSING,
            ProblemCode.HEATMAP_NOT_FOUND,
        ),
    },
)
async def get_heatmap(
    job_id: str,
    track_id: Annotated[int, Path(ge=0, description="tracks[].track_id of the result.")],
    frame_index: Annotated[int, Path(ge=0, description="tracks[].heatmaps[].frame_index of the result.")],
    ctx: ContextDep,
    tenant: TenantDep,
    kind: Annotated[
        HeatmapKind, Query(description="'frame': overlay on the whole frame; 'face': on the aligned face crop.")
    ] = "frame",
) -> Response:
    """The PNG that `tracks[].heatmaps[]` links to, served from this origin (same bytes as the presigned URL)."""
    png = await run_in_threadpool(load_heatmap_png, ctx, job_id, tenant.id, track_id, frame_index, kind)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

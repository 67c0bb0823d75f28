"""Example documents for the OpenAPI description: one realistic request and response per route.

Built from the real models (validated at import), so an example can never drift from the schema it shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deepfake_core.result import DetectionResult
from deepfake_jobs.models import (
    DeliveryAttempt,
    DeliveryOutcome,
    Job,
    JobError,
    JobOptions,
    JobStatus,
    MediaRef,
    MediaSourceKind,
    Stage,
)
from deepfake_jobs.views import public_job

from deepfake_gateway.job_access import ServedResult
from deepfake_gateway.rest.schemas import (
    DeliveryLogView,
    DeliveryView,
    JobPageView,
    RedeliveryView,
    UploadView,
    WebhookSecretView,
)

JOB_ID = "3f2a9c0e8b7d4e5f9a1b2c3d4e5f6a7b"
_CREATED = datetime(2025, 1, 15, 9, 30, 0, tzinfo=UTC)
_OPTIONS = JobOptions(
    callback_url="https://example.com/hooks/deepfake",
    metadata={"case": "A-1042"},
    sampling="windows:2",
)
_MEDIA = MediaRef(
    source=MediaSourceKind.UPLOAD,
    object_key="uploads/acme/x/media",
    filename="interview.mp4",
    content_type="video/mp4",
    size_bytes=18_874_368,
    sha256="9b74c9897bac770ffc029102a200c5de6b2c7e1b6b5c9f1a3d0c2d9f8e7a6b5c",
)


def _job(**changes: Any) -> dict[str, Any]:
    job = Job(id=JOB_ID, tenant_id="acme", media=_MEDIA, options=_OPTIONS, created_at=_CREATED, updated_at=_CREATED)
    return public_job(job.model_copy(update=changes)).document()


QUEUED_JOB = _job()
PROCESSING_JOB = _job(status=JobStatus.PROCESSING, stage=Stage.INFERENCE, progress=60, started_at=_CREATED)
SUCCEEDED_JOB = _job(
    status=JobStatus.SUCCEEDED,
    progress=100,
    started_at=_CREATED,
    finished_at=_CREATED,
    verdict="fake",
    model_version="3",
)
FAILED_JOB = _job(
    status=JobStatus.FAILED,
    progress=10,
    finished_at=_CREATED,
    error=JobError(code="corrupt_media", message="The file could not be decoded as an image or a video."),
)

RESULT = ServedResult.model_validate(
    {
        "verdict": "fake",
        "score": 0.91,
        "confidence": 0.82,
        "decision_rule": "fake if any face track scores >= 0.5; uncertain if any scores >= 0.35; else real",
        "thresholds": {"fake": 0.5, "uncertain_low": 0.35, "cnn_weight": 0.6, "lstm_weight": 0.4},
        "model": {
            "name": "deepfake_detector",
            "version": "3",
            "input_size": 224,
            "sequence_length": 30,
            "trained": True,
            "sha256": None,
        },
        "media": {
            "type": "video",
            "format": "mp4/h264",
            "size_bytes": 18_874_368,
            "sha256": _MEDIA.sha256,
            "width": 1280,
            "height": 720,
            "duration_s": 10.0,
            "fps": 30.0,
            "total_frames": 300,
            "frames_sampled": 60,
        },
        "sampling": "windows:2@8fps",
        "tracks": [
            {
                "track_id": 0,
                "frames": [
                    {
                        "frame_index": 4,
                        "timestamp_s": 0.133,
                        "detection_score": 0.98,
                        "score": 0.93,
                        "box": {"x": 512.0, "y": 140.0, "width": 220.0, "height": 260.0},
                    },
                ],
                "frame_score": 0.93,
                "sequence_score": 0.88,
                "score": 0.91,
                "verdict": "fake",
                "heatmaps": [
                    {
                        "frame_index": 4,
                        "kind": "face",
                        "score": 0.93,
                        "ref": "https://storage.example.com/deepfake/results/x/heatmaps/t0_f4_face.png?X-Amz-Signature=...",
                    },
                ],
            }
        ],
        "timings_ms": {"media": 410.0, "faces": 820.0, "inference": 950.0, "scoring": 2.0, "explain": 120.0},
        "created_at": _CREATED,
        "job_id": JOB_ID,
        "cache_hit": False,
    }
).model_dump(mode="json")
_ = DetectionResult.model_validate(RESULT)

JOB_PAGE = JobPageView.model_validate(
    {"jobs": [SUCCEEDED_JOB, PROCESSING_JOB], "next_cursor": "MDAwMTczNjkzMzQwMDAwMDAwMDA6M2YyYQ"}
).model_dump(mode="json", by_alias=True)

UPLOAD = UploadView(
    upload_id=JOB_ID,
    upload_url=f"https://storage.example.com/deepfake/uploads/acme/{JOB_ID}/media?X-Amz-Signature=...",
    headers={"Content-Type": "video/mp4"},
    expires_at=_CREATED,
    max_bytes=536_870_912,
).model_dump(mode="json")

DELIVERIES = DeliveryLogView(
    job_id=JOB_ID,
    event_id="evt_5d41402abc4b2a76b9719d911017c592",
    event_type="job.succeeded",
    deliveries=[
        DeliveryView.of(
            DeliveryAttempt(
                event_id="evt_5d41402abc4b2a76b9719d911017c592",
                attempt=1,
                url="https://example.com/hooks/deepfake",
                outcome=DeliveryOutcome.RETRYING,
                status_code=503,
                error="the receiver answered HTTP 503",
                at=_CREATED,
                next_retry_at=_CREATED,
                duration_ms=41.2,
            )
        ),
        DeliveryView.of(
            DeliveryAttempt(
                event_id="evt_5d41402abc4b2a76b9719d911017c592",
                attempt=2,
                url="https://example.com/hooks/deepfake",
                outcome=DeliveryOutcome.DELIVERED,
                status_code=200,
                at=_CREATED,
                duration_ms=38.5,
            )
        ),
    ],
).model_dump(mode="json")

REDELIVERY = RedeliveryView(
    job_id=JOB_ID, event_id="evt_5d41402abc4b2a76b9719d911017c592", status="queued"
).model_dump()

WEBHOOK_SECRET = WebhookSecretView(
    secret="whsec_4c1f0a...", signature_header="Deepfake-Signature", scheme="t=<unix>,v1=<hex hmac-sha256>"
).model_dump()

SUBMIT_JSON_EXAMPLES = {
    "url": {
        "summary": "Media from a public URL",
        "value": {
            "media_url": "https://example.com/media/interview.mp4",
            "callback_url": _OPTIONS.callback_url,
            "metadata": {"case": "A-1042"},
            "sampling": "windows:2",
            "explain": True,
        },
    },
    "upload_id": {
        "summary": "Media PUT to a presigned URL from POST /v1/uploads",
        "value": {"upload_id": JOB_ID, "priority": "high"},
    },
}
SUBMIT_MULTIPART_EXAMPLE = {
    "file": "(binary: the image or video)",
    "callback_url": "https://example.com/hooks/deepfake",
    "metadata": '{"case": "A-1042"}',
    "priority": "normal",
    "sampling": "fps:1",
    "explain": "true",
}


def json_example(value: Any, summary: str = "Example") -> dict[str, Any]:
    return {"application/json": {"examples": {"example": {"summary": summary, "value": value}}}}


def json_examples(**named: tuple[str, Any]) -> dict[str, Any]:
    return {
        "application/json": {
            "examples": {name: {"summary": summary, "value": value} for name, (summary, value) in named.items()}
        }
    }

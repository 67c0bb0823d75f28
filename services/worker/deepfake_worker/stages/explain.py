"""The explain stage: scores, verdict and Grad-CAM heatmaps into the result document, which finishes the job.

The result is then indexed for the result cache (same tenant, media, model and options answer from it).
"""

from __future__ import annotations

from deepfake_core.pipeline import build_result
from deepfake_core.result import DetectionResult
from deepfake_jobs.models import Job, JobStatus
from deepfake_jobs.storage import result_key

from deepfake_worker import inference
from deepfake_worker.progress import ProgressReporter
from deepfake_worker.services import services
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.runner import StageResult
from deepfake_worker.writes import ObjectHeatmapWriter, guarded_write


def explain_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Scores, verdict and Grad-CAM heatmaps into the result document; index it for the result cache."""
    svc = services()
    key = result_key(job.id)
    reused = svc.objects.exists(key)
    if reused:  # persisted by a run that died before marking the job: finish from it
        result = DetectionResult.model_validate_json(svc.objects.get_bytes(key))
    else:
        prepared, run = handoff.prepared_media(), handoff.inference_run()
        backend = inference.get_backend()
        writer = ObjectHeatmapWriter(job.id) if job.options.explain else None
        result = build_result(
            prepared,
            run,
            backend.metadata,
            inference.core_settings(),
            writer,
            job.options.explain,
            model_sha256=backend.sha256,
        )
        if writer is not None:
            writer.flush()  # every heatmap the result refers to is stored before the result is
        document = result.model_dump_json()
        guarded_write(job.id, key, lambda: svc.objects.put_json(key, document))
    if svc.settings.result_cache and job.media.sha256:
        svc.store.remember_result(
            job.tenant_id, job.media.sha256, inference.model_identity(), inference.result_variant(job.options), job.id
        )
    return StageResult(
        changes={
            "status": JobStatus.SUCCEEDED,
            "result_key": key,
            "verdict": result.verdict.value,
            "model_version": result.model.version,
            "progress": 100,
        },
        reused=reused,
        media_type=result.media.type.value,
        score=result.score,
    )

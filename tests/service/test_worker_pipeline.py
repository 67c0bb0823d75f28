"""A job through real Celery workers, Redis and S3: every stage, failures with the core's codes, the cache."""

from __future__ import annotations

import hashlib

from deepfake_core.result import DetectionResult, Verdict
from deepfake_jobs.models import JobStatus, Stage
from deepfake_jobs.storage import audit_key, inference_key, job_record_key, prepared_key


def test_upload_job_runs_every_stage_to_a_result_in_object_storage(
    submit_upload, wait_for_job, object_store, tenant_id, short_clip
):
    job = submit_upload(tenant_id, short_clip, "clip.mp4", metadata={"case": 42})
    done = wait_for_job(job.id)

    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.progress == 100 and done.error is None and not done.cache_hit
    assert [run.stage for run in done.stage_runs] == [Stage.FETCH, Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]
    assert all(run.duration_ms is not None and not run.reused for run in done.stage_runs[1:])
    assert done.options.metadata == {"case": 42}
    result = DetectionResult.model_validate_json(object_store.get_bytes(done.result_key))
    assert result.media.sha256 == hashlib.sha256(short_clip).hexdigest() == done.media.sha256
    assert result.verdict.value == done.verdict and result.model.version == done.model_version
    assert result.tracks, "the clip shows a face"
    refs = [heatmap.ref for track in result.tracks for heatmap in track.heatmaps]
    assert refs and all(ref.startswith(f"results/{job.id}/heatmaps/") and object_store.exists(ref) for ref in refs)
    assert object_store.exists(job_record_key(job.id))
    assert not object_store.exists(prepared_key(job.id)) and not object_store.exists(inference_key(job.id))
    assert object_store.exists(audit_key(done.finished_at, job.id))


def test_no_face_is_a_succeeded_job_with_verdict_no_face(submit_upload, wait_for_job, object_store, tenant_id):
    import cv2
    import skimage.data

    ok, png = cv2.imencode(".png", cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    assert ok
    done = wait_for_job(submit_upload(tenant_id, png.tobytes(), "coffee.png").id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.verdict == Verdict.NO_FACE.value
    result = DetectionResult.model_validate_json(object_store.get_bytes(done.result_key))
    assert result.tracks == [] and result.score is None

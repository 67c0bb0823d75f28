"""The result cache's copy: an earlier job's result and heatmaps, copied under a job with the same media.

Kept apart from the task module, so that tests (and tools) can use it without registering the Celery tasks in
their process: a process that registers them stamps its own time limits on every task it sends.
"""

from __future__ import annotations

from deepfake_core.result import DetectionResult
from deepfake_jobs.storage import ObjectStore, result_key, result_prefix
from minio.error import S3Error


def copy_result(objects: ObjectStore, source_id: str, job_id: str) -> DetectionResult | None:
    """Copy a result and its heatmaps under the new job, so each job owns (and erases) its own objects.

    None when the earlier job's objects are gone, even halfway through the copy (it is being erased right now):
    what was copied is deleted again and the job is analysed like new media.
    """
    try:
        result = DetectionResult.model_validate_json(objects.get_bytes(result_key(source_id)))
        prefix = f"results/{source_id}/"
        for track in result.tracks:
            for heatmap in track.heatmaps:
                if heatmap.ref.startswith(prefix):
                    new_ref = f"results/{job_id}/" + heatmap.ref[len(prefix) :]
                    objects.copy(heatmap.ref, new_ref)
                    heatmap.ref = new_ref
    except S3Error as error:
        if error.code not in ("NoSuchKey", "NoSuchObject"):
            raise
        objects.delete_prefix(result_prefix(job_id))
        return None
    objects.put_json(result_key(job_id), result.model_dump_json())
    return result

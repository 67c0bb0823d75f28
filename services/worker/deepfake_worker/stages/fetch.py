"""The fetch stage: the job's media into object storage with its sha256, then the result cache looked up.

URL media is downloaded under the SSRF rules of `deepfake_jobs.safe_fetch`; uploads are checked and hashed.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile

from deepfake_jobs.metrics import CACHE_HITS
from deepfake_jobs.models import Job, JobStatus, MediaRef, MediaSourceKind
from deepfake_jobs.safe_fetch import fetch_media
from deepfake_jobs.storage import ObjectStore, result_key, result_prefix, upload_key

from deepfake_worker import inference
from deepfake_worker.cache import copy_result
from deepfake_worker.errors import StageFailed
from deepfake_worker.progress import JobCanceled, ProgressReporter
from deepfake_worker.services import Services, services
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.runner import StageResult
from deepfake_worker.writes import ensure_live, guarded_write, job_is_live

log = logging.getLogger(__name__)


def fetch_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Media into object storage with its sha256; then answer from the result cache if the media is known."""
    svc = services()
    is_url = job.media.source is MediaSourceKind.URL
    key = upload_key(job.tenant_id, job.id) if is_url else job.media.object_key
    if not key:
        raise StageFailed("media_missing", "The job has no media; submit it again with a file or a URL.")
    info = svc.objects.stat(key)
    reused = info is not None and job.media.sha256 is not None and job.media.object_key == key
    if reused:
        media = job.media
    elif is_url and info is None:
        media = _fetch_url(job, key, svc)
    else:
        if info is None:
            raise StageFailed(
                "media_missing", "No media was uploaded for this job; PUT the file to the upload URL, then confirm."
            )
        if info.size_bytes > svc.settings.max_media_bytes:
            limit = svc.settings.max_media_bytes
            raise StageFailed("media_too_large", f"The media has {info.size_bytes} bytes; the limit is {limit}.")
        media = job.media.model_copy(
            update={
                "object_key": key,
                "size_bytes": info.size_bytes,
                "sha256": job.media.sha256 or _hash_object(svc.objects, key),
                "content_type": job.media.content_type or info.content_type,
            }
        )
    reporter.report(1.0, force=True)
    cached = _from_cache(job, media, svc) if svc.settings.result_cache else None
    if cached is not None:
        return cached
    return StageResult(changes={"media": media}, reused=reused)


def _hash_object(objects: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in objects.stream(key):
        digest.update(chunk)
    return digest.hexdigest()


def _fetch_url(job: Job, key: str, svc: Services) -> MediaRef:
    if not job.media.url:
        raise StageFailed("media_missing", "The job's media source is 'url' but it has no URL; submit it again.")
    with tempfile.TemporaryFile(prefix="deepfake-fetch-") as spool:
        fetched = fetch_media(job.media.url, svc.settings, spool)
        spool.seek(0)
        content_type = fetched.content_type or "application/octet-stream"
        limit = svc.settings.max_media_bytes
        guarded_write(
            job.id, key, lambda: svc.objects.put_stream(key, spool, max_bytes=limit, content_type=content_type)
        )
    return job.media.model_copy(
        update={
            "object_key": key,
            "size_bytes": fetched.size_bytes,
            "sha256": fetched.sha256,
            "content_type": job.media.content_type or fetched.content_type,
            "filename": job.media.filename or fetched.filename,
        }
    )


def _from_cache(job: Job, media: MediaRef, svc: Services) -> StageResult | None:
    """Finish the job from an earlier job's result (same tenant, media, model and options), if one exists."""
    assert media.sha256 is not None
    identity, variant = inference.model_identity(), inference.result_variant(job.options)
    source_id = svc.store.cached_result(job.tenant_id, media.sha256, identity, variant)
    if source_id is None or source_id == job.id:
        return None
    ensure_live(job.id, "the cached result")
    result = copy_result(svc.objects, source_id, job.id)
    if not job_is_live(job.id):  # canceled or erased while the copies were made: take them back
        svc.objects.delete_prefix(result_prefix(job.id))
        raise JobCanceled(f"job {job.id} was canceled or erased while its cached result was copied")
    if result is None:  # the earlier job was erased: forget it
        svc.store.forget_result(job.tenant_id, media.sha256, identity, variant)
        return None
    CACHE_HITS.inc()
    log.info("job %s answered from the result of job %s (same media sha256)", job.id, source_id)
    return StageResult(
        changes={
            "media": media,
            "status": JobStatus.SUCCEEDED,
            "result_key": result_key(job.id),
            "verdict": result.verdict.value,
            "model_version": result.model.version,
            "cache_hit": True,
            "progress": 100,
        },
        media_type=result.media.type.value,
        score=result.score,
    )

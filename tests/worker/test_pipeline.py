"""A job through real Celery workers, Redis and S3: every stage, failures with the core's codes, the cache."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest
from deepfake_core.result import DetectionResult, Verdict
from deepfake_jobs.models import Job, JobStatus, Stage
from deepfake_jobs.storage import audit_key, inference_key, job_record_key, prepared_key, upload_key

from tests.stack.servers import Route


def test_upload_job_runs_every_stage_to_a_result_in_object_storage(
    submit_upload, wait_for_job, object_store, tenant_id, short_clip
):
    media = short_clip + tenant_id.encode()  # bytes after the MP4's boxes: unknown to the result cache
    job = submit_upload(tenant_id, media, "clip.mp4", metadata={"case": 42})
    done = wait_for_job(job.id)

    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.progress == 100 and done.error is None and not done.cache_hit
    assert [run.stage for run in done.stage_runs] == [Stage.FETCH, Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]
    assert all(run.duration_ms is not None and not run.reused for run in done.stage_runs[1:])
    assert done.options.metadata == {"case": 42}
    result = DetectionResult.model_validate_json(object_store.get_bytes(done.result_key))
    assert result.media.sha256 == hashlib.sha256(media).hexdigest() == done.media.sha256
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


def test_bad_media_fails_with_the_core_error_code(submit_upload, wait_for_job, object_store, tenant_id):
    from deepfake_core.errors import DetectionError
    from deepfake_core.media.loader import load_media
    from deepfake_core.settings import CoreSettings

    from tests.utils.media_factory import pdf_document

    document = pdf_document()
    with pytest.raises(DetectionError) as expected:  # what the core says about these bytes, in-process
        load_media(document, CoreSettings())
    done = wait_for_job(submit_upload(tenant_id, document, "report.mp4").id)
    assert done.status is JobStatus.FAILED
    assert done.error.code == expected.value.code.value and done.error.message
    assert done.result_key is None and done.stage == Stage.PREPROCESS
    assert [run.stage for run in done.stage_runs] == [Stage.FETCH, Stage.PREPROCESS]
    assert object_store.exists(audit_key(done.finished_at, done.id)), "failed jobs are audited too"


def test_identical_media_is_answered_from_the_result_cache(
    submit_upload, wait_for_job, object_store, tenant_id, short_clip, celery_worker
):
    media = short_clip + tenant_id.encode()  # bytes no other test sent (trailing bytes after the MP4 boxes)
    first = wait_for_job(submit_upload(tenant_id, media, "a.mp4").id)
    assert first.status is JobStatus.SUCCEEDED and not first.cache_hit
    hits_before = celery_worker.metrics().get("deepfake_cache_hits_total", 0.0)

    second = wait_for_job(submit_upload(tenant_id, media, "b.mp4").id)
    assert second.status is JobStatus.SUCCEEDED and second.cache_hit
    assert [run.stage for run in second.stage_runs] == [Stage.FETCH], "no decoding, no inference"
    assert second.verdict == first.verdict and second.result_key == f"results/{second.id}/result.json"
    original = DetectionResult.model_validate_json(object_store.get_bytes(first.result_key))
    copied = DetectionResult.model_validate_json(object_store.get_bytes(second.result_key))
    assert copied.score == original.score and copied.media.sha256 == original.media.sha256
    refs = [h.ref for t in copied.tracks for h in t.heatmaps]
    assert refs and all(ref.startswith(f"results/{second.id}/") and object_store.exists(ref) for ref in refs)
    assert celery_worker.metrics()["deepfake_cache_hits_total"] == hits_before + 1

    other_options = wait_for_job(submit_upload(tenant_id, media, "c.mp4", sampling="uniform:4").id)
    assert not other_options.cache_hit, "a different sampling plan is a different result"


def test_the_result_cache_never_answers_across_tenants(submit_upload, wait_for_job, tenant_id, short_clip):
    """Tenant B sending bytes tenant A had analysed must not learn so from `cache_hit`: the cache is per tenant."""
    media = short_clip + b"cross-tenant" + tenant_id.encode()
    first = wait_for_job(submit_upload(tenant_id, media, "a.mp4").id)
    assert first.status is JobStatus.SUCCEEDED and not first.cache_hit, first.error
    other = wait_for_job(submit_upload("other-" + tenant_id, media, "a.mp4").id)
    assert other.status is JobStatus.SUCCEEDED, other.error
    assert not other.cache_hit, "another tenant's result answered this tenant's upload"
    assert [run.stage for run in other.stage_runs] == [Stage.FETCH, Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]


def test_media_from_a_url_is_fetched_stored_and_analysed(
    submit_url, wait_for_job, object_store, http_server, tenant_id, short_clip
):
    url = http_server.add(f"/media/{tenant_id}.mp4", Route(body=short_clip, content_type="video/mp4"))
    done = wait_for_job(submit_url(tenant_id, url).id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.media.object_key == upload_key(tenant_id, done.id)
    assert object_store.get_bytes(done.media.object_key) == short_clip
    assert done.media.sha256 == hashlib.sha256(short_clip).hexdigest()
    assert done.media.filename == f"{tenant_id}.mp4" and done.media.content_type == "video/mp4"


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/video.mp4"])
def test_a_url_to_a_private_address_fails_the_job_without_a_request(
    submit_url, wait_for_job, http_server, tenant_id, target
):
    direct = wait_for_job(submit_url(tenant_id, target).id)
    assert direct.status is JobStatus.FAILED and direct.error.code == "url_not_allowed"
    redirect = http_server.add(f"/redirect/{tenant_id}", Route(redirect=target))
    via_redirect = wait_for_job(submit_url(tenant_id, redirect).id)
    assert via_redirect.status is JobStatus.FAILED and via_redirect.error.code == "url_not_allowed"


def test_a_canceled_job_stops_and_is_never_overwritten(
    submit_url, wait_for_job, job_store, object_store, http_server, celery_worker, tenant_id, short_clip
):
    release = threading.Event()
    path = f"/slow/{tenant_id}.mp4"
    url = http_server.add(path, Route(body=short_clip, content_type="video/mp4", hold=release))
    hook = http_server.add(f"/hooks/cancel-{tenant_id}", Route(status=200))
    job = submit_url(tenant_id, url, callback_url=hook)
    http_server.wait_for(path)  # the fetch stage is downloading
    canceled = job_store.cancel(job.id, tenant_id)
    release.set()  # let the download finish: the stage must notice the cancel on its own

    wait_until_idle(celery_worker, job_store)
    final = job_store.get(job.id)
    assert final.status is JobStatus.CANCELED and final.progress == canceled.progress
    assert final.result_key is None and final.stage_runs == canceled.stage_runs
    assert not object_store.exists(f"results/{job.id}/result.json")
    assert not object_store.exists(prepared_key(job.id))
    assert http_server.received(f"/hooks/cancel-{tenant_id}") == [], "canceled jobs send no webhook"


def test_a_worker_killed_mid_stage_is_replaced_and_the_job_resumes(
    submit_url, wait_for_job, job_store, http_server, celery_worker, tenant_id, short_clip
):
    release = threading.Event()
    path = f"/crash/{tenant_id}.mp4"
    media = short_clip + tenant_id.encode()  # unknown to the result cache: every stage must run
    url = http_server.add(path, Route(body=media, content_type="video/mp4", hold=release))
    job = submit_url(tenant_id, url)
    http_server.wait_for(path)
    running = job_store.get(job.id)
    assert running.status is JobStatus.PROCESSING and running.stage is Stage.FETCH
    for pid in celery_worker.pool_pids():  # SIGKILL: no cleanup, no ack; the message must be redelivered
        os.kill(pid, signal.SIGKILL)
    release.set()

    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert len(http_server.wait_for(path, count=2)) >= 2, "the fetch ran again in a new process"
    fetches = [run for run in done.stage_runs if run.stage is Stage.FETCH]
    assert len(fetches) == 2 and fetches[0].duration_ms is None, "the killed run never finished"
    assert [run.stage for run in done.stage_runs[2:]] == [Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]


def test_a_rerun_chain_reuses_the_outputs_of_finished_stages(
    submit_upload, wait_for_job, job_store, object_store, tenant_id, short_clip
):
    from deepfake_jobs.dispatch import pipeline, submit_job
    from deepfake_jobs.queues import TASK_FETCH, TASK_PREPROCESS

    # Bytes of their own, so the result cache cannot answer.
    job = submit_upload(tenant_id, short_clip + tenant_id.encode(), "clip.mp4", dispatch=False)
    pipeline(job, stages=(TASK_FETCH, TASK_PREPROCESS)).apply_async()  # as if the worker died after preprocess

    def preprocessed(current: Job) -> bool:
        return any(run.stage is Stage.PREPROCESS and run.duration_ms is not None for run in current.stage_runs)

    partial = wait_for_job(job.id, until=preprocessed)
    assert partial.status is JobStatus.PROCESSING and object_store.exists(prepared_key(job.id))

    submit_job(job)  # the whole chain again
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    runs = [(run.stage, run.reused) for run in done.stage_runs]
    # An upload arrives stored and hashed by the gateway, so even the first fetch has nothing to do.
    assert runs == [
        (Stage.FETCH, True),
        (Stage.PREPROCESS, False),
        (Stage.FETCH, True),
        (Stage.PREPROCESS, True),
        (Stage.INFERENCE, False),
        (Stage.EXPLAIN, False),
    ]


def test_a_worker_on_every_queue_runs_the_stages_of_a_job_in_one_task(
    submit_upload, wait_for_job, celery_worker, object_store, tenant_id, short_clip
):
    """The fast path: each stage after fetch runs in the fetch task, its input handed over in memory."""
    job = submit_upload(tenant_id, short_clip + b"fast" + tenant_id.encode(), "clip.mp4")
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert [run.stage for run in done.stage_runs] == [Stage.FETCH, Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]
    log = celery_worker.log_path.read_text(errors="replace")
    for stage, after in (("preprocess", "fetch"), ("inference", "preprocess"), ("explain", "inference")):
        assert f"job {job.id}: deepfake.{stage} runs right here after deepfake.{after} (fast path)" in log
    assert not object_store.exists(prepared_key(job.id)) and not object_store.exists(inference_key(job.id))


def test_a_cached_result_erased_during_its_copy_is_not_reused(
    submit_upload, wait_for_job, object_store, tenant_id, short_clip
):
    """The earlier job is being erased while its result is copied (a heatmap is already gone): the copy gives up
    and leaves nothing half-copied under the new job, which is then analysed like new media."""
    from deepfake_jobs.models import new_job_id
    from deepfake_jobs.storage import result_key, result_prefix
    from deepfake_worker.cache import copy_result

    source = wait_for_job(submit_upload(tenant_id, short_clip + b"erased" + tenant_id.encode(), "clip.mp4").id)
    assert source.status is JobStatus.SUCCEEDED, source.error
    refs = [h.ref for t in DetectionResult.model_validate_json(object_store.get_bytes(source.result_key)).tracks
            for h in t.heatmaps]  # fmt: skip
    assert len(refs) >= 2
    target = new_job_id()
    copied = copy_result(object_store, source.id, target)
    assert copied is not None and object_store.exists(result_key(target)), "a whole copy, while nothing is erased"
    object_store.delete_prefix(result_prefix(target))

    object_store.delete(refs[-1])  # the erase of the earlier job got this far
    assert copy_result(object_store, source.id, target) is None
    assert list(object_store.list_keys(result_prefix(target))) == []


def test_worker_metrics_cover_jobs_stages_inference_and_queues(celery_worker, submit_upload, wait_for_job, tenant_id):
    wait_for_job(submit_upload(tenant_id, b"not media at all", "x.jpg").id)
    metrics = celery_worker.metrics()
    assert any(name.startswith("deepfake_jobs_total{") and 'state="failed"' in name for name in metrics)
    for stage in ("fetch", "preprocess"):
        assert metrics[f'deepfake_stage_duration_seconds_count{{stage="{stage}"}}'] >= 1
    assert metrics['deepfake_inference_duration_seconds_count{backend="onnxruntime"}'] >= 1
    assert metrics["deepfake_inference_batch_size_count"] >= 1
    for queue in ("preprocess", "inference", "explain", "webhooks"):
        assert f'deepfake_queue_depth{{queue="{queue}"}}' in metrics


# --- helpers ----------------------------------------------------------------------------------------------------


def wait_until_idle(worker, job_store, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    """Until no task runs, waits or is reserved in the worker, and its queues are empty."""
    from deepfake_jobs.dispatch import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inspector = app.control.inspect(timeout=1.0)
        busy = [inspector.active(), inspector.reserved(), inspector.scheduled()]
        if any(reply is None for reply in busy):  # no answer in time is not "idle": a loaded worker answers late
            time.sleep(0.2)
            continue
        tasks = [task for reply in busy for tasks in reply.values() for task in tasks]
        if not tasks and not any(job_store.queue_depths(("preprocess", "inference", "explain")).values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker was still busy after {timeout_s} s")

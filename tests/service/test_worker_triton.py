"""The inference stage on Triton: a worker pool with DEEPFAKE_INFERENCE_BACKEND=triton against a real tritonserver
(python backend, CPU) serving the same plumbing model, on queues of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deepfake_core.result import DetectionResult
from deepfake_jobs.models import JobStatus, Stage

from tests.service.servers import CeleryWorker

TRITON_QUEUES = {
    "DEEPFAKE_QUEUE_PREPROCESS": "triton-preprocess",
    "DEEPFAKE_QUEUE_INFERENCE": "triton-inference",
    "DEEPFAKE_QUEUE_EXPLAIN": "triton-explain",
    "DEEPFAKE_QUEUE_WEBHOOKS": "triton-webhooks",
}


@pytest.fixture(scope="module")
def triton_worker(service_env: dict[str, str], triton_server, celery_worker) -> Iterator[CeleryWorker]:  # noqa: ANN001
    env = {
        **service_env,
        **TRITON_QUEUES,
        "DEEPFAKE_INFERENCE_BACKEND": "triton",
        "DEEPFAKE_TRITON_URL": triton_server.url,
    }
    with CeleryWorker(env, list(TRITON_QUEUES.values()), concurrency=1, node_name="triton") as worker:
        yield worker


def test_a_job_runs_its_inference_on_triton(
    triton_worker, submit_upload, wait_for_job, object_store, tenant_id, short_clip
):
    from deepfake_worker.dispatch import pipeline
    from deepfake_worker.settings import WorkerSettings

    queues = WorkerSettings(**{name.removeprefix("DEEPFAKE_").lower(): value for name, value in TRITON_QUEUES.items()})
    media = short_clip + b"triton" + tenant_id.encode()  # not in the result cache
    job = submit_upload(tenant_id, media, "clip.mp4", dispatch=False)
    pipeline(job, settings=queues).apply_async()

    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert [run.stage for run in done.stage_runs][1:] == [Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]
    result = DetectionResult.model_validate_json(object_store.get_bytes(done.result_key))
    assert result.tracks and result.model.input_size == 64
    metrics = triton_worker.metrics()
    assert metrics['deepfake_inference_duration_seconds_count{backend="triton"}'] >= 1
    assert 'deepfake_inference_duration_seconds_count{backend="onnxruntime"}' not in metrics

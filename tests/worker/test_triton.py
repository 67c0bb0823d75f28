"""The inference stage on Triton: a worker pool with DEEPFAKE_INFERENCE_BACKEND=triton against a real tritonserver
(python backend, CPU) serving the same plumbing model, on queues of its own; and a Triton outage, which jobs wait
out (`progress_stage=waiting_for_model`) for DEEPFAKE_MODEL_WAIT_S (20 s here), then fail `service_unavailable`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from deepfake_core.result import DetectionResult
from deepfake_jobs.models import JobStatus, Stage

from tests.stack.servers import CeleryWorker

MODEL_WAIT_S = 20
# What the stage had before it waited by time: TASK_MAX_RETRIES=2 retries 0.5 s then 1 s apart (service_env).
OLD_RETRY_BUDGET_S = 1.5

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
        "DEEPFAKE_MODEL_WAIT_S": str(MODEL_WAIT_S),
        "DEEPFAKE_MODEL_WAIT_RETRY_MAX_S": "1",
    }
    with CeleryWorker(env, list(TRITON_QUEUES.values()), concurrency=1, node_name="triton") as worker:
        yield worker


@pytest.fixture(autouse=True)
def triton_up(triton_server) -> None:  # noqa: ANN001
    """Each test starts with Triton running (a no-op when it is): a test that stops it need not start it again
    only for the module's teardown to stop it."""
    triton_server.start()


def test_a_job_runs_its_inference_on_triton(
    triton_worker, submit_upload, wait_for_job, object_store, tenant_id, short_clip
):
    job = _submit_to_triton(submit_upload, tenant_id, short_clip, b"triton")  # not in the result cache

    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert [run.stage for run in done.stage_runs][1:] == [Stage.PREPROCESS, Stage.INFERENCE, Stage.EXPLAIN]
    result = DetectionResult.model_validate_json(object_store.get_bytes(done.result_key))
    assert result.tracks and result.model.input_size == 64
    metrics = triton_worker.metrics()
    assert metrics['deepfake_inference_duration_seconds_count{backend="triton"}'] >= 1
    assert 'deepfake_inference_duration_seconds_count{backend="onnxruntime"}' not in metrics


def _submit_to_triton(submit_upload, tenant_id: str, short_clip: bytes, tag: bytes, queues=TRITON_QUEUES):  # noqa: ANN001, ANN202
    """An upload of the clip (made unique by `tag`) dispatched onto `queues` (DEEPFAKE_QUEUE_* -> queue name)."""
    from deepfake_jobs.dispatch import pipeline
    from deepfake_worker.settings import WorkerSettings

    routing = WorkerSettings(**{name.removeprefix("DEEPFAKE_").lower(): value for name, value in queues.items()})
    job = submit_upload(tenant_id, short_clip + tag + tenant_id.encode(), "clip.mp4", dispatch=False)
    pipeline(job, settings=routing).apply_async()
    return job


def _poll(job_store, job_id: str, until, timeout_s: float):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    job = job_store.get(job_id)
    while not until(job):
        assert time.monotonic() < deadline, f"job {job_id} never reached the expected state: {job}"
        time.sleep(0.2)
        job = job_store.get(job_id)
    return job


def test_a_triton_outage_longer_than_the_retry_budget_is_waited_out(
    triton_worker, triton_server, submit_upload, wait_for_job, job_store, tenant_id, short_clip
):
    from deepfake_jobs.models import WAITING_FOR_MODEL, utcnow
    from deepfake_jobs.views import public_job

    triton_server.stop()
    try:
        job = _submit_to_triton(submit_upload, tenant_id, short_clip, b"outage")
        waiting = _poll(job_store, job.id, lambda j: j.progress_stage == WAITING_FOR_MODEL, 120)
        assert public_job(waiting).progress_stage == WAITING_FOR_MODEL, "GET /v1/jobs/{id} shows the wait"
        # Inference, or fetch when this worker process has not read the model's config from Triton yet.
        assert waiting.status is JobStatus.PROCESSING and waiting.stage in (Stage.FETCH, Stage.INFERENCE)
        # Keep Triton down for several times what the old count of retries allowed.
        _poll(
            job_store,
            job.id,
            lambda j: j.terminal or (utcnow() - j.waiting_since).total_seconds() > 4 * OLD_RETRY_BUDGET_S,
            60,
        )
        assert not job_store.get(job.id).terminal, job_store.get(job.id).error
    finally:
        triton_server.start()
    done = wait_for_job(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.progress_stage is None and done.waiting_since is None


def test_a_worker_started_while_triton_is_down_waits_for_it_where_it_first_reads_the_model(
    service_env, triton_server, submit_upload, wait_for_job, job_store, tenant_id, short_clip
):
    """A fresh worker process has never read the model's config (its identity, windows, input size): the fetch stage
    asks Triton for it (the result cache is keyed by the model's identity), so an outage then is waited out there,
    as in inference, instead of failing the job with inference_failed."""
    from deepfake_jobs.models import WAITING_FOR_MODEL

    cold = {name: f"{queue}-cold" for name, queue in TRITON_QUEUES.items()}
    env = {**service_env, **cold, "DEEPFAKE_INFERENCE_BACKEND": "triton", "DEEPFAKE_TRITON_URL": triton_server.url,
           "DEEPFAKE_MODEL_WAIT_S": str(MODEL_WAIT_S * 3), "DEEPFAKE_MODEL_WAIT_RETRY_MAX_S": "1"}  # fmt: skip
    triton_server.stop()
    with CeleryWorker(env, list(cold.values()), concurrency=1, node_name="triton-cold"):
        job = _submit_to_triton(submit_upload, tenant_id, short_clip, b"cold", cold)
        waiting = _poll(job_store, job.id, lambda j: j.terminal or j.progress_stage == WAITING_FOR_MODEL, 120)
        assert not waiting.terminal, waiting.error
        assert waiting.stage is Stage.FETCH, "the first stage that reads the model from Triton waits"
        triton_server.start()
        done = wait_for_job(job.id, timeout_s=120)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.progress_stage is None and done.waiting_since is None, "the wait ended with the outage"


def test_a_triton_outage_past_the_configured_wait_fails_with_service_unavailable(
    triton_worker, triton_server, submit_upload, wait_for_job, tenant_id, short_clip
):
    triton_server.stop()  # and left stopped: `triton_up` starts it for any test that runs after this one
    job = _submit_to_triton(submit_upload, tenant_id, short_clip, b"gone")
    done = wait_for_job(job.id, timeout_s=MODEL_WAIT_S + 90)
    assert done.status is JobStatus.FAILED
    assert done.error.code == "service_unavailable" and "model server" in done.error.message, done.error
    waited = (done.finished_at - done.waiting_since).total_seconds()
    assert waited >= MODEL_WAIT_S, f"gave up after {waited:.1f} s of a {MODEL_WAIT_S} s wait"

"""The fault suite: a batch of jobs, then a fault, then every job terminal, none lost, none with two different
results, and each webhook event delivered once (one 2xx per job, every attempt with the same event id).

A private stack of real processes, so that faults hurt nobody else: Redis with the append-only file, the S3
server with its request log replayed on restart (deepfake_devstack.s3_server), two worker processes, Celery beat
(the stalled-job sweep and Redis recovery every 5 s, a job stalled after 60 s), the gateway, and the session's
webhook receiver. Short retry intervals come from settings, so every scenario stays within a couple of minutes.

Not here: a Triton outage, which test_worker_triton.py covers against the real Triton (waited out past the old
retry budget, then `service_unavailable` past DEEPFAKE_MODEL_WAIT_S).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
import redis
from deepfake_devstack import RedisServer, S3Server
from deepfake_jobs.models import JobStatus
from deepfake_jobs.storage import ObjectStore
from deepfake_jobs.store import JobStore

from tests.stack.fixtures import QUEUES, write_tenants
from tests.stack.servers import CeleryWorker, GatewayServer, Route, ScriptedHTTPServer

BATCH = 3
JOB_TIMEOUT_S = 150.0
TENANT = "faults"


class CeleryBeat(CeleryWorker):
    """`celery beat` in a process of its own, as the chart runs it: the stalled-job sweep and Redis recovery.
    (Not embedded in the worker with -B: its process would be one of the worker's children a SIGKILL hits.)"""

    name = "celery-beat"

    def command(self) -> Sequence[str]:
        return [
            sys.executable, "-m", "celery", "-A", "deepfake_worker.celery_app", "beat",
            "--schedule", str(self.scratch_dir() / "celerybeat-schedule"), "--loglevel", "INFO",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        return "beat: Starting..." in self.log_tail(50)


@dataclass
class FaultStack:
    redis: RedisServer
    s3: S3Server
    worker: CeleryWorker
    gateway: GatewayServer
    store: JobStore
    objects: ObjectStore
    api_key: str
    receiver: ScriptedHTTPServer

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60, **kwargs
        )


@pytest.fixture(scope="module")
def stack(
    service_env: dict[str, str],
    platform_settings,
    http_server,
    tmp_path_factory: pytest.TempPathFactory,  # noqa: ANN001
) -> Iterator[FaultStack]:
    folder = tmp_path_factory.mktemp("faults")
    tenants_file, keys, tenant_ids = write_tenants(folder, {TENANT: (100_000, 1000)})
    bucket = f"deepfake-faults-{uuid.uuid4().hex[:8]}"
    with (
        RedisServer(appendonly=True, data_dir=folder / "redis") as redis_server,
        S3Server(replay_dir=folder / "s3") as s3_server,
    ):
        env = {
            **service_env,
            "DEEPFAKE_REDIS_URL": redis_server.url,
            "DEEPFAKE_S3_ENDPOINT": s3_server.url,
            "DEEPFAKE_S3_BUCKET": bucket,
            "DEEPFAKE_TENANTS_FILE": str(tenants_file),
            "DEEPFAKE_TASK_MAX_RETRIES": "8",  # 0.5 s doubling: about a minute of storage outage survived
            "DEEPFAKE_WEBHOOK_RETRY_PERIOD_S": "300",
            "DEEPFAKE_JOB_SOFT_TIME_LIMIT_S": "40",
            "DEEPFAKE_JOB_TIME_LIMIT_S": "50",
            "DEEPFAKE_STALL_AFTER_S": "60",
            "DEEPFAKE_STALL_CHECK_INTERVAL_S": "5",
            "DEEPFAKE_GRPC_ENABLED": "false",
        }
        settings = platform_settings.model_copy(
            update={"redis_url": redis_server.url, "s3_endpoint": s3_server.url, "s3_bucket": bucket}
        )
        objects = ObjectStore(settings)
        objects.ensure_bucket()
        store = JobStore(redis.Redis.from_url(redis_server.url, decode_responses=True), objects, settings)
        gateway = GatewayServer(env, log_path=folder / "gateway.log")
        with (
            CeleryWorker(env, QUEUES, concurrency=2, node_name="faults", log_path=folder / "worker.log") as worker,
            CeleryBeat(env, (), log_path=folder / "beat.log"),
        ):
            gateway.start()
            try:
                key = keys[tenant_ids[TENANT]]
                yield FaultStack(redis_server, s3_server, worker, gateway, store, objects, key, http_server)
            finally:
                gateway.stop()


# --- the batch and its checks -------------------------------------------------------------------------------------


@dataclass
class Batch:
    job_ids: list[str]
    hooks: dict[str, str]  # job id -> the receiver path of its webhook


def submit_batch(stack: FaultStack, clip: bytes, scenario: str, route: Route | None = None) -> Batch:
    """BATCH jobs with distinct media (no result-cache answers), each with its own webhook path."""
    batch = Batch([], {})
    with stack.client() as client:
        for index in range(BATCH):
            path = f"/faults/{scenario}/{uuid.uuid4().hex[:8]}"
            hook = stack.receiver.add(path, route or Route(status=204))
            media = clip + f"{scenario}-{index}-{uuid.uuid4().hex}".encode()
            response = client.post(
                "/v1/jobs", files={"file": ("clip.mp4", media, "video/mp4")}, data={"callback_url": hook}
            )
            assert response.status_code == 202, response.text
            batch.job_ids.append(response.json()["id"])
            batch.hooks[response.json()["id"]] = path
    return batch


def wait_until_processing(stack: FaultStack, batch: Batch, timeout_s: float = 60.0) -> None:
    """Until one job of the batch is inside a stage: the moment to strike."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = [stack.store.get(job_id) for job_id in batch.job_ids]
        if any(job is not None and job.status is JobStatus.PROCESSING for job in jobs):
            return
        time.sleep(0.05)
    raise AssertionError(f"no job of {batch.job_ids} started within {timeout_s} s")


def _get_until(get, timeout_s: float):  # noqa: ANN001, ANN202
    """Retry a read through a fault (a backing service still coming back) until it answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return get()
        except (redis.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def assert_batch_came_through(stack: FaultStack, batch: Batch, timeout_s: float = JOB_TIMEOUT_S) -> None:
    """Every job terminal and succeeded, none lost, one result each, one delivered event each."""
    deadline = time.monotonic() + timeout_s
    pending = list(batch.job_ids)
    while pending:
        assert time.monotonic() < deadline, f"jobs not finished after {timeout_s} s: {pending}"
        job = _get_until(lambda: stack.store.get(pending[0]), 60)
        assert job is not None, f"job {pending[0]} was lost"
        if job.terminal:
            pending.pop(0)
        else:
            time.sleep(0.2)
    for job_id in batch.job_ids:
        job = stack.store.get(job_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED, (job_id, job and job.error)
        result = json.loads(stack.objects.get_bytes(job.result_key))
        assert result["verdict"] == job.verdict, "the result document and the job disagree"
        path = batch.hooks[job_id]
        requests = stack.receiver.wait_for(path, count=1, timeout_s=max(1.0, deadline - time.monotonic()))
        delivered = _wait_for_delivery(stack.receiver, path, deadline)
        events = {r.headers["Deepfake-Event-Id"] for r in stack.receiver.received(path)}
        assert len(events) == 1, f"job {job_id}: deliveries with different event ids {events}"
        assert len(delivered) == 1, f"job {job_id}: its event was delivered {len(delivered)} times"
        event = json.loads(delivered[0].body)
        assert event["job"]["id"] == job_id and event["job"]["verdict"] == job.verdict
        assert requests, "no webhook"


def _wait_for_delivery(receiver: ScriptedHTTPServer, path: str, deadline: float) -> list:
    while True:
        delivered = [r for r in receiver.received(path) if 200 <= r.status < 300]
        if delivered or time.monotonic() > deadline:
            return delivered
        time.sleep(0.2)


def assert_no_job_of_scenario_left_unfinished(stack: FaultStack) -> None:
    with stack.client() as client:
        for status in ("queued", "processing"):
            listed = client.get("/v1/jobs", params={"status": status, "limit": 50})
            assert listed.status_code == 200 and listed.json()["jobs"] == [], listed.text


# --- scenarios -----------------------------------------------------------------------------------------------------


def test_worker_processes_sigkilled_mid_stage(stack: FaultStack, short_clip: bytes) -> None:
    batch = submit_batch(stack, short_clip, "sigkill")
    wait_until_processing(stack, batch)
    pool = stack.worker.pool_pids()
    assert pool, "no pool processes to kill"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    assert_batch_came_through(stack, batch)


def test_redis_restarted_with_its_append_only_file(stack: FaultStack, short_clip: bytes) -> None:
    batch = submit_batch(stack, short_clip, "redis-restart")
    wait_until_processing(stack, batch)
    stack.redis.restart()
    assert_batch_came_through(stack, batch)
    assert_no_job_of_scenario_left_unfinished(stack)


def test_redis_losing_its_data_mid_batch(stack: FaultStack, short_clip: bytes) -> None:
    """Queues, records and indexes gone at once: recovery rebuilds the records from object storage and the
    stalled-job sweep re-drives the unfinished ones (after DEEPFAKE_STALL_AFTER_S=60); the finished ones are
    listed again."""
    batch = submit_batch(stack, short_clip, "redis-loss")
    wait_until_processing(stack, batch)
    # A restart that comes back empty (no persistence, a failover to an empty replica). Not FLUSHALL: Celery's
    # clients cache the queue bindings they declared per connection, and only a new connection declares them again.
    stack.redis.stop()
    shutil.rmtree(stack.redis.data_dir)
    stack.redis.start()
    assert_batch_came_through(stack, batch, timeout_s=JOB_TIMEOUT_S + 60)
    with stack.client() as client:  # the finished jobs are listed again
        listed = {job["id"] for job in client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert set(batch.job_ids) <= listed


def test_object_storage_down_for_20_s_then_restarted(stack: FaultStack, short_clip: bytes) -> None:
    batch = submit_batch(stack, short_clip, "s3-down")
    wait_until_processing(stack, batch)
    stack.s3.stop()
    outage_ends = time.monotonic() + 20  # the fault itself: storage stays away this long
    while time.monotonic() < outage_ends:
        time.sleep(0.5)
    stack.s3.start()  # replays its request log: the objects written before the outage are back
    assert_batch_came_through(stack, batch)


def test_webhook_receiver_down_for_a_while(stack: FaultStack, short_clip: bytes) -> None:
    """The receiver answers 503 until every job of the batch is finished and has been refused at least twice."""
    route = Route(status=503)
    batch = submit_batch(stack, short_clip, "receiver-down", route)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not all(
        len(stack.receiver.received(path)) >= 2 and (job := stack.store.get(job_id)) is not None and job.terminal
        for job_id, path in batch.hooks.items()
    ):
        assert time.monotonic() < deadline, "the batch did not finish or no retries reached the receiver"
        time.sleep(0.2)
    route.status = 204  # the receiver is back
    assert_batch_came_through(stack, batch)
    for job_id, path in batch.hooks.items():
        assert [r.status for r in stack.receiver.received(path)][-1] == 204
        log = stack.store.deliveries(job_id)
        assert log[-1].outcome.value == "delivered" and {a.outcome.value for a in log[:-1]} == {"retrying"}


def test_gateway_restarted_during_an_upload(stack: FaultStack, short_clip: bytes) -> None:
    """The client gets a clear error (the connection ends before an answer); no job was created for it."""
    boundary = "fault-boundary"
    release = threading.Event()
    outcome: list[object] = []

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode() + short_clip[: len(short_clip) // 2]
        release.wait(60)
        yield short_clip[len(short_clip) // 2 :] + f"\r\n--{boundary}--\r\n".encode()

    def upload() -> None:
        with stack.client() as client:
            try:
                outcome.append(
                    client.post(
                        "/v1/jobs",
                        content=body(),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                    )
                )
            except httpx.HTTPError as error:
                outcome.append(error)

    with stack.client() as client:
        before = client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]
    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    from deepfake_gateway.ratelimit import RESERVATION_KEY_PREFIX

    deadline = time.monotonic() + 30
    while not stack.store.redis.keys(RESERVATION_KEY_PREFIX + "*"):  # the upload was admitted and is streaming
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    stack.gateway.stop(timeout_s=3)
    release.set()
    sender.join(60)
    stack.gateway.start()
    assert outcome, "the upload never ended"
    error = outcome[0]
    assert isinstance(error, httpx.HTTPError) or error.status_code >= 500, error  # type: ignore[union-attr]
    with stack.client() as client:
        after = client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]
        assert [job["id"] for job in after] == [job["id"] for job in before], "an orphan job was created"
        retried = client.post("/v1/jobs", files={"file": ("again.mp4", short_clip + b"again", "video/mp4")})
        assert retried.status_code == 202, retried.text

"""The local service stack as a pytest plugin (registered by tests/conftest.py), all real and on loopback: Redis,
an S3 server (moto in its own process), a plumbing model, Celery worker processes on every queue, a scripted HTTP
server (media host and webhook receiver), and the gateways under uvicorn (REST and gRPC, with a tenants file:
`gateway`, plus a constrained one and one without Redis for the admission and outage tests).

Registered once for the whole suite, so every directory that uses these fixtures (tests/gateway, tests/worker,
tests/jobs, tests/client, tests/service, tests/console, tests/fuzz) shares ONE stack per session: a conftest that
imported them would define them a second time, and pytest would start a second Redis, S3 server and set of workers.

The model is an UNTRAINED network exported at input 64 (DEEPFAKE_ALLOW_UNTRAINED_MODEL=true): its scores mean
nothing; these tests check the plumbing (stages, storage, retries, webhooks), never detection quality.
The variables every process gets are in `service_env` (documented in services/jobs/README.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deepfake_devstack import RedisServer, S3Server
from deepfake_devstack.ports import LOOPBACK, free_port

if TYPE_CHECKING:  # the service packages load only when a test asks for the stack: every test session loads this
    from deepfake_worker.settings import WorkerSettings

    from tests.stack.gateway_support import Gateway
    from tests.stack.servers import CeleryWorker, ScriptedHTTPServer

PLUMBING_INPUT_SIZE = 64
TEST_SAMPLING = "uniform:6"
QUEUES = ("preprocess", "inference", "explain", "webhooks")
TERMINAL_WRITES_GRACE_S = 15.0

# Tenants of the main gateway: name -> (rate_limit_per_minute, max_concurrent_jobs).
TENANT_LIMITS = {
    "alpha": (100_000, 1000),
    "beta": (100_000, 1000),
    "grpc": (100_000, 1000),
    "client": (100_000, 1000),
    "lister": (100_000, 1000),
    "hooks": (100_000, 1000),
    "limited": (3, 1000),
    "single": (100_000, 1),
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def plumbing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepfake_core.model.export import create_untrained_model

    path = tmp_path_factory.mktemp("service-model") / "untrained64.onnx"
    return create_untrained_model(path, input_size=PLUMBING_INPUT_SIZE, seed=0)


@pytest.fixture(scope="module")
def triton_server(plumbing_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Triton (CPU, python backend) serving the plumbing model, one per test module that asks."""
    from deepfake_core.serving.model_repository import install_model
    from deepfake_devstack.triton_server import TritonServer

    root = tmp_path_factory.mktemp("triton-model-repository")
    install_model(plumbing_model, root)
    with TritonServer(root / "cpu") as server:
        yield server


@pytest.fixture(scope="session")
def service_env(redis_server: RedisServer, s3_server: S3Server, plumbing_model: Path) -> dict[str, str]:
    """The environment of every service process (workers, gateway) in these tests."""
    return {
        "DEEPFAKE_ENVIRONMENT": "test",
        "DEEPFAKE_REDIS_URL": redis_server.url,
        "DEEPFAKE_S3_ENDPOINT": s3_server.url,
        "DEEPFAKE_S3_ACCESS_KEY": s3_server.access_key,
        "DEEPFAKE_S3_SECRET_KEY": s3_server.secret_key,
        "DEEPFAKE_S3_BUCKET": f"deepfake-test-{uuid.uuid4().hex[:8]}",
        "DEEPFAKE_S3_REGION": "us-east-1",
        "DEEPFAKE_MODEL_PATH": str(plumbing_model),
        "DEEPFAKE_ALLOW_UNTRAINED_MODEL": "true",
        "DEEPFAKE_SAMPLING": TEST_SAMPLING,
        "DEEPFAKE_ONNX_THREADS": "1",
        "DEEPFAKE_INFERENCE_BACKEND": "onnxruntime",
        "DEEPFAKE_FETCH_ALLOWLIST": LOOPBACK,  # the scripted media server and webhook receiver
        "DEEPFAKE_FETCH_READ_TIMEOUT_S": "10",
        "DEEPFAKE_WEBHOOK_SIGNING_KEY": "test-webhook-signing-key",
        "DEEPFAKE_WEBHOOK_BACKOFF_BASE_S": "0.5",
        "DEEPFAKE_WEBHOOK_BACKOFF_MAX_S": "2",
        "DEEPFAKE_WEBHOOK_RETRY_PERIOD_S": "60",
        "DEEPFAKE_TASK_RETRY_BACKOFF_S": "0.5",
        "DEEPFAKE_TASK_MAX_RETRIES": "2",
        "DEEPFAKE_PROGRESS_INTERVAL_S": "0",
    }


@pytest.fixture(scope="session")
def platform_settings(service_env: dict[str, str]) -> WorkerSettings:
    """The services' settings, for this process's clients; the sending Celery app here sends to the test Redis.

    Built from `service_env` without touching os.environ, so tests of other areas in the same session keep
    their own environment.
    """
    from deepfake_jobs.dispatch import app
    from deepfake_worker.settings import WorkerSettings

    fields = {name.removeprefix("DEEPFAKE_").lower(): value for name, value in service_env.items()}
    settings = WorkerSettings(**fields)
    app.conf.broker_url = settings.redis_url
    return settings


@pytest.fixture(scope="session")
def object_store(platform_settings):  # noqa: ANN001, ANN201 - types live in deepfake_jobs
    from deepfake_jobs.storage import ObjectStore

    objects = ObjectStore(platform_settings)
    objects.ensure_bucket()
    return objects


@pytest.fixture(scope="session")
def job_store(platform_settings, object_store):  # noqa: ANN001, ANN201
    from deepfake_jobs.store import JobStore

    return JobStore.from_settings(platform_settings, object_store)


@pytest.fixture(scope="session")
def celery_worker(service_env: dict[str, str], platform_settings, object_store) -> Iterator[CeleryWorker]:  # noqa: ANN001
    """Worker processes consuming all four queues (two pool processes)."""
    from tests.stack.servers import CeleryWorker

    with CeleryWorker(service_env, QUEUES, concurrency=2) as worker:
        yield worker


@pytest.fixture(scope="session")
def http_server() -> Iterator[ScriptedHTTPServer]:
    """Media host and webhook receiver in threads of this process (127.0.0.1 is allow-listed for the workers)."""
    from tests.stack.servers import ScriptedHTTPServer

    server = ScriptedHTTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def tenant_id() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def wait_for_job(job_store, object_store) -> Callable[..., object]:  # noqa: ANN001
    """`wait_for_job(job_id, until=terminal, timeout_s=120)`: poll the store until the predicate holds.

    A job turns terminal in Redis before the worker writes its final records (the mirror, the audit record, the
    removal of stage outputs), so a terminal job is returned once those writes are in (or after a short grace, for
    jobs that no worker finished); tests may then check object storage at once.
    """
    from deepfake_jobs.models import JobStatus
    from deepfake_jobs.storage import audit_key, inference_key

    def settled(job) -> bool:  # noqa: ANN001 - the last writes the worker makes after the terminal flip
        return job.status is JobStatus.CANCELED or (
            object_store.exists(audit_key(job.finished_at, job.id)) and not object_store.exists(inference_key(job.id))
        )

    def wait(job_id: str, until: Callable[[object], bool] | None = None, timeout_s: float = 120.0):  # noqa: ANN202
        predicate = until or (lambda job: job.terminal)
        deadline = time.monotonic() + timeout_s
        job = None
        while time.monotonic() < deadline:
            job = job_store.get(job_id)
            if job is not None and predicate(job):
                grace = min(deadline, time.monotonic() + TERMINAL_WRITES_GRACE_S)
                while job.terminal and not settled(job) and time.monotonic() < grace:
                    time.sleep(0.1)
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not reach the expected state in {timeout_s} s; last: {job}")

    return wait


@pytest.fixture(scope="session")
def submit_upload(job_store, object_store, celery_worker):  # noqa: ANN001, ANN201
    """`submit_upload(tenant, data, filename, **options) -> Job`: what the gateway does for an upload, then dispatch.

    Stores the bytes at uploads/{tenant}/{job}/media (streamed, hashed), creates the job, sends its chain.
    """
    import io

    from deepfake_jobs.dispatch import submit_job
    from deepfake_jobs.models import Job, JobOptions, MediaRef, MediaSourceKind
    from deepfake_jobs.storage import upload_key

    def submit(tenant: str, data: bytes, filename: str, *, dispatch: bool = True, **options: object) -> Job:
        job = Job(
            tenant_id=tenant,
            media=MediaRef(source=MediaSourceKind.UPLOAD, filename=filename),
            options=JobOptions(**options),
        )
        stored = object_store.put_stream(upload_key(tenant, job.id), io.BytesIO(data))
        job.media = job.media.model_copy(
            update={"object_key": stored.key, "size_bytes": stored.size_bytes, "sha256": stored.sha256}
        )
        job_store.create(job)
        if dispatch:
            submit_job(job)
        return job

    return submit


@pytest.fixture(scope="session")
def submit_url(job_store, celery_worker):  # noqa: ANN001, ANN201
    """`submit_url(tenant, url, **options) -> Job`: a job whose media the fetch stage downloads."""
    from deepfake_jobs.dispatch import submit_job
    from deepfake_jobs.models import Job, JobOptions, MediaRef, MediaSourceKind

    def submit(tenant: str, url: str, **options: object) -> Job:
        job = Job(tenant_id=tenant, media=MediaRef(source=MediaSourceKind.URL, url=url), options=JobOptions(**options))
        job_store.create(job)
        submit_job(job)
        return job

    return submit


@pytest.fixture(scope="session")
def short_clip() -> bytes:
    """Two seconds of the real talking-face video, 320x240 at 12 fps (H.264 MP4)."""
    from tests.utils.media_factory import cached_clip

    return cached_clip("service-clip.mp4", width=320, height=240, fps=12, seconds=2.0).read_bytes()


# --- gateways -----------------------------------------------------------------------------------------------------


def write_tenants(folder: Path, names: dict[str, tuple[int, int]]) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A tenants file with `names` (name -> (rate per minute, concurrent jobs)); (path, id -> key, name -> id)."""
    from deepfake_jobs.tenants import hash_api_key, new_api_key

    suffix = uuid.uuid4().hex[:6]
    tenant_ids = {name: f"{name}-{suffix}" for name in names}
    keys = {tenant_ids[name]: new_api_key() for name in names}
    document = {
        "tenants": [
            {
                "id": tenant_ids[name],
                "api_key_sha256": hash_api_key(keys[tenant_ids[name]]),
                "rate_limit_per_minute": rate,
                "max_concurrent_jobs": concurrent,
            }
            for name, (rate, concurrent) in names.items()
        ]
    }
    path = folder / "tenants.json"
    path.write_text(json.dumps(document))
    return path, keys, tenant_ids


@contextmanager
def running_gateway(env: dict[str, str], folder: Path, names: dict[str, tuple[int, int]]) -> Iterator[Gateway]:
    """A gateway under uvicorn with the tenants `names`, stopped on exit."""
    from tests.stack.gateway_support import Gateway
    from tests.stack.servers import GatewayServer

    tenants_file, keys, tenant_ids = write_tenants(folder, names)
    grpc_port = free_port()
    server = GatewayServer(
        {
            **env,
            "DEEPFAKE_TENANTS_FILE": str(tenants_file),
            "DEEPFAKE_GRPC_PORT": str(grpc_port),
            "DEEPFAKE_GRPC_HOST": LOOPBACK,
        },  # fmt: skip
        log_path=folder / "gateway.log",
    )
    server.start()
    queue = env.get("DEEPFAKE_QUEUE_PREPROCESS", "preprocess")
    try:
        yield Gateway(server.url, f"{LOOPBACK}:{grpc_port}", keys, tenant_ids, server.log_path, queue)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(service_env: dict[str, str], celery_worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: ANN001
    """The gateway with its workers; tenants of TENANT_LIMITS, each with its own API key."""
    env = {**service_env, "DEEPFAKE_LONG_POLL_MAX_S": "20"}
    with running_gateway(env, tmp_path_factory.mktemp("gateway"), TENANT_LIMITS) as handle:
        yield handle


@pytest.fixture(scope="session")
def constrained_gateway(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose jobs go to a queue no worker reads, with a small media limit and no model file.

    Submissions there stay queued, so the queue depth grows by one per job: backpressure starts at 2.
    """
    queue = f"unconsumed-{uuid.uuid4().hex[:6]}"
    env = {
        **service_env,
        "DEEPFAKE_QUEUE_PREPROCESS": queue,
        "DEEPFAKE_MAX_QUEUE_DEPTH": "2",
        "DEEPFAKE_QUEUE_DEPTH_CACHE_S": "0",
        "DEEPFAKE_OVERLOAD_RETRY_AFTER_S": "7",
        "DEEPFAKE_MAX_MEDIA_BYTES": "4096",
        "DEEPFAKE_MAX_METADATA_BYTES": "256",
        "DEEPFAKE_UPLOAD_STALL_TIMEOUT_S": "1",
        "DEEPFAKE_MODEL_PATH": "/nonexistent/model.onnx",
    }
    tenants = {"crowded": (100_000, 1000), "other": (100_000, 1000)}
    with running_gateway(env, tmp_path_factory.mktemp("constrained-gateway"), tenants) as handle:
        yield handle


@pytest.fixture(scope="session")
def photo_bytes(media_dir: Path) -> bytes:
    """A real photo with faces (a few hundred KB)."""
    return (media_dir / "sample1.jpg").read_bytes()


@pytest.fixture(scope="session")
def gateway_without_redis(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose Redis does not exist (a port nothing listens on): dependency outages."""
    env = {**service_env, "DEEPFAKE_REDIS_URL": f"redis://{LOOPBACK}:{free_port()}/0"}
    with running_gateway(env, tmp_path_factory.mktemp("gateway-without-redis"), {"stranded": (100, 10)}) as handle:
        yield handle


# Every fixture above that starts or talks to a server: a test using one of them (directly or through another
# fixture) is a service test.
STACK_FIXTURES = frozenset(
    {
        "redis_server", "s3_server", "triton_server", "service_env", "platform_settings", "object_store",
        "job_store", "celery_worker", "http_server", "wait_for_job", "submit_upload", "submit_url",
        "gateway", "constrained_gateway", "gateway_without_redis",
    }
)  # fmt: skip
# Directories of system tests that start servers of their own, with or without the fixtures above.
SERVER_TEST_DIRS = (Path(__file__).resolve().parents[1] / "service",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the local servers `services` (`-m "not services"` leaves them out)."""
    for item in items:
        path = Path(str(item.fspath))
        uses_stack = not STACK_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        if uses_stack or any(path.is_relative_to(folder) for folder in SERVER_TEST_DIRS):
            item.add_marker(pytest.mark.services)

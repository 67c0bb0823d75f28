"""Fixtures of the gateway tests, a pytest plugin (test modules name it in `pytest_plugins`).

Tenants with API keys; the gateway under uvicorn with REST and gRPC; and a second, constrained gateway whose
queue nobody consumes (backpressure, size limits, an unready inference backend). Built on the session
fixtures of tests/service/conftest.py (Redis, S3, Celery workers, `service_env`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deepfake_devstack.ports import LOOPBACK, free_port
from deepfake_jobs.tenants import hash_api_key, new_api_key

from tests.service.gateway_support import Gateway
from tests.service.servers import GatewayServer

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


def _write_tenants(folder: Path, names: dict[str, tuple[int, int]]) -> tuple[Path, dict[str, str], dict[str, str]]:
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


def _start_gateway(
    env: dict[str, str], folder: Path, names: dict[str, tuple[int, int]]
) -> tuple[GatewayServer, Gateway]:
    tenants_file, keys, tenant_ids = _write_tenants(folder, names)
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
    return server, Gateway(server.url, f"{LOOPBACK}:{grpc_port}", keys, tenant_ids, server.log_path, queue)


@pytest.fixture(scope="session")
def gateway(service_env: dict[str, str], celery_worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: ANN001
    """The gateway with its workers; tenants of TENANT_LIMITS, each with its own API key."""
    env = {**service_env, "DEEPFAKE_LONG_POLL_MAX_S": "20"}
    server, handle = _start_gateway(env, tmp_path_factory.mktemp("gateway"), TENANT_LIMITS)
    try:
        yield handle
    finally:
        server.stop()


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
    server, handle = _start_gateway(env, tmp_path_factory.mktemp("constrained-gateway"), tenants)
    try:
        yield handle
    finally:
        server.stop()


@pytest.fixture(scope="session")
def photo_bytes(media_dir: Path) -> bytes:
    """A real photo with faces (a few hundred KB)."""
    return (media_dir / "sample1.jpg").read_bytes()


@pytest.fixture(scope="session")
def gateway_without_redis(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose Redis does not exist (a port nothing listens on): dependency outages."""
    env = {**service_env, "DEEPFAKE_REDIS_URL": f"redis://{LOOPBACK}:{free_port()}/0"}
    server, handle = _start_gateway(env, tmp_path_factory.mktemp("gateway-without-redis"), {"stranded": (100, 10)})
    try:
        yield handle
    finally:
        server.stop()

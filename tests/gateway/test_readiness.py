"""Readiness holds what accepting a job needs (Redis, object storage), nothing more: with Triton stopped the
gateway stays ready, says so under `info`, and takes jobs, which wait in their queue; Triton back, `info` says ok.

The gateway here reaches Triton as the chart configures it: DEEPFAKE_TRITON_URL=dns:///host:port.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from deepfake_devstack.ports import LOOPBACK

from tests.stack.fixtures import running_gateway
from tests.stack.gateway_support import Gateway, empty_queue, submit_file

READY_CHECKS = {"redis": "ok", "object_storage": "ok"}


@pytest.fixture(scope="module")
def triton_gateway(
    service_env: dict[str, str], object_store, triton_server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:  # noqa: ANN001
    """A gateway configured for Triton, whose jobs go to a queue no worker reads (they stay queued)."""
    env = {
        **service_env,
        "DEEPFAKE_INFERENCE_BACKEND": "triton",
        "DEEPFAKE_TRITON_URL": f"dns:///{LOOPBACK}:{triton_server.grpc_port}",
        "DEEPFAKE_QUEUE_PREPROCESS": f"unconsumed-{uuid.uuid4().hex[:6]}",
    }
    with running_gateway(env, tmp_path_factory.mktemp("triton-gateway"), {"queued": (100_000, 1000)}) as handle:
        yield handle
    empty_queue(redis.Redis.from_url(service_env["DEEPFAKE_REDIS_URL"]), handle.first_queue)


def readiness(gateway: Gateway, tenant: str | None = None) -> httpx.Response:
    """/readyz, with the API key of `tenant` (failure reasons are shown only to a tenant)."""
    headers = {"Authorization": f"Bearer {gateway.key(tenant)}"} if tenant else {}
    return httpx.get(f"{gateway.url}/readyz", headers=headers, timeout=10)


def wait_for_inference_info(gateway: Gateway, ok: bool, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = readiness(gateway).json()
        if (body.get("info", {}).get("inference") == "ok") == ok or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def test_ready_with_triton_reported_as_information(triton_gateway: Gateway) -> None:
    body = wait_for_inference_info(triton_gateway, ok=True)
    assert body == {"status": "ready", "checks": READY_CHECKS, "info": {"inference": "ok"}}


def test_a_triton_outage_keeps_the_api_ready_and_jobs_queue(
    triton_gateway: Gateway, triton_server, photo_bytes: bytes
) -> None:  # noqa: ANN001
    triton_server.stop()
    try:
        response = readiness(triton_gateway, "queued")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready" and body["checks"] == READY_CHECKS
        assert "Triton" in body["info"]["inference"], body
        anonymous = readiness(triton_gateway).json()
        assert anonymous["info"] == {"inference": "unavailable"}, "no host names without a key"
        with triton_gateway.client("queued") as client:
            submitted = submit_file(client, photo_bytes)
            assert submitted.status_code == 202, submitted.text
            job = client.get(f"/v1/jobs/{submitted.json()['id']}").json()
            assert job["status"] == "queued", job
    finally:
        triton_server.start()
    body = wait_for_inference_info(triton_gateway, ok=True)
    assert body["info"] == {"inference": "ok"}, body


def test_a_redis_outage_still_fails_readiness(gateway_without_redis: Gateway, object_store) -> None:  # noqa: ANN001
    """The other side of the rule: what accepting a job needs does gate readiness."""
    response = readiness(gateway_without_redis)
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"] and "inference" in body["info"], body


def test_readiness_shows_no_paths_or_hosts_without_an_api_key(constrained_gateway: Gateway) -> None:
    """The constrained gateway's model file does not exist: the reason names its path, but only to a tenant."""
    anonymous = readiness(constrained_gateway)
    assert anonymous.status_code == 200
    text = anonymous.text
    assert (
        "/nonexistent" not in text and LOOPBACK not in text and anonymous.json()["info"] == {"inference": "unavailable"}
    ), text
    detailed = readiness(constrained_gateway, "crowded").json()
    assert "/nonexistent/model.onnx" in detailed["info"]["inference"], detailed

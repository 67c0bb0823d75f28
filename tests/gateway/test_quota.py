"""The concurrent-job quota holds for slow uploads: a quota slot taken when an upload starts expires after
`quota_reservation_ttl_s` (1 s here), and the quota is checked again when the job is created, so uploads that
outlive their slot cannot push a tenant past its limit (the probe had 4 jobs admitted for a limit of 2).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.stack.fixtures import running_gateway
from tests.stack.gateway_support import Gateway, assert_problem, empty_queue

LIMIT = 2
BOUNDARY = "quota-test-boundary"


@pytest.fixture(scope="module")
def quota_gateway(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Jobs stay queued (no worker reads the queue), so each admitted job keeps counting against the quota."""
    env = {
        **service_env,
        "DEEPFAKE_QUEUE_PREPROCESS": f"unconsumed-{uuid.uuid4().hex[:6]}",
        "DEEPFAKE_QUOTA_RESERVATION_TTL_S": "1",
        "DEEPFAKE_UPLOAD_STALL_TIMEOUT_S": "60",
    }
    with running_gateway(env, tmp_path_factory.mktemp("quota-gateway"), {"slow": (100_000, LIMIT)}) as handle:
        yield handle
    empty_queue(redis.Redis.from_url(service_env["DEEPFAKE_REDIS_URL"]), handle.first_queue)


class SlowUpload:
    """A multipart upload that sends its head and half the file, then waits for `release` before the rest."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.release = threading.Event()
        self.sent_half = threading.Event()
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _body(self) -> Iterator[bytes]:
        yield (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + b"\xff\xd8\xff"
            + b"1" * 2000
        )
        self.sent_half.set()
        self.release.wait(120)
        yield b"2" * 2000 + f"\r\n--{BOUNDARY}--\r\n".encode()

    def _run(self) -> None:
        with self.gateway.client("slow", timeout=120) as client:
            self.response = client.post(
                "/v1/jobs", content=self._body(), headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            )

    def finish(self) -> httpx.Response:
        self.release.set()
        self.thread.join(120)
        assert self.response is not None
        return self.response


def _reservations(job_store, tenant_id: str) -> int:  # noqa: ANN001
    from deepfake_gateway.ratelimit import RESERVATION_KEY_PREFIX

    return int(job_store.redis.zcard(RESERVATION_KEY_PREFIX + tenant_id))


def test_uploads_slower_than_their_quota_slot_are_checked_again_at_admission(quota_gateway: Gateway, job_store) -> None:  # noqa: ANN001
    tenant_id = quota_gateway.tenant_ids["slow"]
    slow = [SlowUpload(quota_gateway) for _ in range(LIMIT)]
    for upload in slow:
        upload.thread.start()
    deadline = time.monotonic() + 60
    while _reservations(job_store, tenant_id) < LIMIT:  # both uploads passed the quota and stream their file
        assert time.monotonic() < deadline, "the slow uploads were never admitted"
        time.sleep(0.05)

    # Once the slow uploads' slots expired, other submissions get in: up to the limit.
    fast: list[httpx.Response] = []
    with quota_gateway.client("slow") as client:
        deadline = time.monotonic() + 60
        while len(fast) < LIMIT:
            assert time.monotonic() < deadline, "no fast submission was admitted after the slots expired"
            response = client.post("/v1/jobs", files={"file": ("fast.jpg", b"\xff\xd8\xff" + b"3" * 100, "image/jpeg")})
            if response.status_code == 202:
                fast.append(response)
            else:
                assert_problem(response, 429, "concurrency_limit")
                time.sleep(0.1)
        finished = [upload.finish() for upload in slow]
        for response in finished:
            problem = assert_problem(response, 429, "concurrency_limit")
            assert "quota" in problem["detail"]
        in_flight = client.get("/v1/jobs", params={"status": "queued", "limit": 50}).json()["jobs"]
    assert len(in_flight) == LIMIT, f"{len(in_flight)} jobs in flight for a limit of {LIMIT}"

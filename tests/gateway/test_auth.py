"""API keys, tenant isolation and admission control (rate limit, concurrent-job quota) on the real gateway."""

from __future__ import annotations

import threading
import uuid

import httpx
from deepfake_jobs.tenants import Tenant, TenantRegistry, hash_api_key, new_api_key

from tests.stack.gateway_support import Gateway, assert_problem, wait_terminal
from tests.stack.servers import Route


def test_missing_and_wrong_keys_are_refused(gateway: Gateway) -> None:
    anonymous = httpx.get(f"{gateway.url}/v1/jobs")
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{gateway.url}/v1/jobs", headers={"Authorization": "Bearer dfk_not-a-real-key"})
    assert_problem(wrong, 401, "unauthorized")
    basic = httpx.get(f"{gateway.url}/v1/jobs", headers={"Authorization": f"Basic {gateway.key('alpha')}"})
    assert_problem(basic, 401, "unauthorized")
    assert_problem(httpx.post(f"{gateway.url}/v1/jobs", json={"media_url": "http://example.com/a.jpg"}), 401,
                   "unauthorized")  # fmt: skip


def test_x_api_key_header_is_accepted(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/jobs", headers={"X-API-Key": gateway.key("alpha")})
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit"] == "100000"


def test_a_tenant_cannot_see_or_touch_another_tenants_job(gateway: Gateway, photo_bytes: bytes) -> None:
    with gateway.client("alpha") as alpha, gateway.client("beta") as beta:
        submitted = alpha.post("/v1/jobs", files={"file": ("p.jpg", photo_bytes, "image/jpeg")})
        job_id = submitted.json()["id"]
        for response in (
            beta.get(f"/v1/jobs/{job_id}"),
            beta.get(f"/v1/jobs/{job_id}", params={"wait": 1}),
            beta.get(f"/v1/jobs/{job_id}/result"),
            beta.get(f"/v1/jobs/{job_id}/deliveries"),
            beta.post(f"/v1/jobs/{job_id}/deliveries/redeliver"),
            beta.delete(f"/v1/jobs/{job_id}"),
        ):
            problem = assert_problem(response, 404, "job_not_found")
            assert job_id in problem["detail"]
        unknown = assert_problem(beta.get(f"/v1/jobs/{uuid.uuid4().hex}"), 404, "job_not_found")
        assert unknown["title"] == problem["title"]  # the same answer as for a job that does not exist
        assert job_id not in {job["id"] for job in beta.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
        assert wait_terminal(alpha, job_id)["status"] == "succeeded"  # untouched by beta's delete


def test_rate_limit_answers_429_with_retry_after(gateway: Gateway) -> None:
    with gateway.client("limited") as client:
        admitted = [client.get("/v1/jobs") for _ in range(3)]
        assert [response.status_code for response in admitted] == [200, 200, 200]
        assert [response.headers["x-ratelimit-remaining"] for response in admitted] == ["2", "1", "0"]
        refused = client.get("/v1/jobs")
        problem = assert_problem(refused, 429, "rate_limited")
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 60 and problem["retry_after_s"] == retry_after
        assert refused.headers["x-ratelimit-remaining"] == "0"
    # Other tenants keep their own budget.
    assert httpx.get(f"{gateway.url}/v1/jobs", headers={"X-API-Key": gateway.key("beta")}).status_code == 200


def test_concurrent_job_quota_answers_429(gateway: Gateway, http_server, photo_bytes: bytes) -> None:  # noqa: ANN001
    release = threading.Event()
    url = http_server.add(f"/slow/{uuid.uuid4().hex}.jpg", Route(body=photo_bytes, content_type="image/jpeg",
                                                                  hold=release))  # fmt: skip
    with gateway.client("single") as client:
        first = client.post("/v1/jobs", json={"media_url": url, "explain": False})
        assert first.status_code == 202, first.text
        try:
            second = client.post("/v1/jobs", json={"media_url": url, "explain": False})
            problem = assert_problem(second, 429, "concurrency_limit")
            assert "limit 1" in problem["detail"] and int(second.headers["retry-after"]) >= 1
        finally:
            release.set()
        assert wait_terminal(client, first.json()["id"])["status"] == "succeeded"
        third = client.post("/v1/jobs", json={"media_url": url, "explain": False})
        assert third.status_code == 202, third.text  # the finished job no longer counts
        wait_terminal(client, third.json()["id"])


def test_tenants_stored_in_redis_authenticate(gateway: Gateway, job_store) -> None:  # noqa: ANN001
    key = new_api_key()
    tenant = Tenant(id=f"redis-{uuid.uuid4().hex[:8]}", api_key_sha256=hash_api_key(key), rate_limit_per_minute=50)
    registry = TenantRegistry(redis=job_store.redis)
    registry.put(tenant)
    try:
        response = httpx.get(f"{gateway.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit"] == "50"
    finally:
        assert registry.delete(tenant.id)

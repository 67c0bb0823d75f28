"""Refusals before any work is queued: backpressure, size limits, option checks, SSRF, malformed requests.

Runs against the constrained gateway (its queue has no consumer, media is limited to 4 KiB, metadata to
256 bytes), so that nothing here loads the workers.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from deepfake_gateway.ratelimit import RESERVATION_KEY_PREFIX

from tests.stack.gateway_support import Gateway, assert_problem, empty_queue

UNREACHABLE_MEDIA = "http://127.0.0.1:9/media.jpg"  # allow-listed loopback; nothing is fetched here anyway


@pytest.fixture
def client(constrained_gateway: Gateway, job_store) -> httpx.Client:  # noqa: ANN001
    empty_queue(job_store.redis, constrained_gateway.first_queue)  # start each test with an empty queue
    with constrained_gateway.client("crowded") as client:
        yield client


def test_backpressure_answers_503_with_retry_after_when_the_queue_is_full(
    client: httpx.Client,
    constrained_gateway: Gateway,
    job_store,  # noqa: ANN001
) -> None:
    accepted = [client.post("/v1/jobs", json={"media_url": UNREACHABLE_MEDIA}) for _ in range(2)]
    assert [response.status_code for response in accepted] == [202, 202]
    refused = client.post("/v1/jobs", json={"media_url": UNREACHABLE_MEDIA})
    problem = assert_problem(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "7" and "limit 2" in problem["detail"]
    # Reading is never refused; and the queue draining re-opens submissions.
    assert client.get(f"/v1/jobs/{accepted[0].json()['id']}").status_code == 200
    empty_queue(job_store.redis, constrained_gateway.first_queue)
    assert client.post("/v1/jobs", json={"media_url": UNREACHABLE_MEDIA}).status_code == 202


def test_oversized_uploads_are_refused_with_413(client: httpx.Client) -> None:
    too_big = b"\xff\xd8\xff" + b"\x00" * 5000
    response = client.post("/v1/jobs", files={"file": ("big.jpg", too_big, "image/jpeg")})
    assert "4096" in assert_problem(response, 413, "media_too_large")["detail"]
    ticket = client.post("/v1/uploads", json={"content_type": "image/jpeg"}).json()
    assert ticket["max_bytes"] == 4096
    assert httpx.put(ticket["upload_url"], content=too_big, headers=ticket["headers"]).status_code == 200
    assert_problem(client.post("/v1/jobs", json={"upload_id": ticket["upload_id"]}), 413, "media_too_large")


def read_http_response(connection: socket.socket) -> str:
    """Head and body may arrive in separate segments: read until the declared length is in."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data.decode()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_a_stalled_upload_is_dropped_and_nothing_is_kept(
    constrained_gateway: Gateway,
    object_store,  # noqa: ANN001
    job_store,  # noqa: ANN001
) -> None:
    job_store.redis.delete(RESERVATION_KEY_PREFIX + constrained_gateway.tenant_ids["crowded"])
    boundary = "stall"
    head = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + b"\xff\xd8\xff"
        + b"0" * 500
    )
    host, port = constrained_gateway.url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {constrained_gateway.key('crowded')}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(head) + 2000}\r\n\r\n"
    ).encode()
    tenant_id = constrained_gateway.tenant_ids["crowded"]
    before = set(object_store.list_keys(f"uploads/{tenant_id}/"))
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request + head)  # then nothing more: the declared rest never comes
        answer = read_http_response(connection)
    status_line, _, rest = answer.partition("\r\n")
    assert " 400 " in status_line and "invalid_body" in rest and "sent nothing" in rest
    assert set(object_store.list_keys(f"uploads/{tenant_id}/")) == before
    assert job_store.redis.zcard(RESERVATION_KEY_PREFIX + tenant_id) == 0  # its quota reservation was released


def test_an_empty_upload_is_refused(client: httpx.Client) -> None:
    response = client.post("/v1/jobs", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert_problem(response, 422, "empty_media")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"media_url": UNREACHABLE_MEDIA, "sampling": "every:3"}, 422, "invalid_sampling"),
        ({"media_url": UNREACHABLE_MEDIA, "sampling": "uniform:0"}, 422, "invalid_sampling"),
        ({"media_url": UNREACHABLE_MEDIA, "metadata": {"notes": "x" * 300}}, 422, "metadata_too_large"),
        ({"media_url": UNREACHABLE_MEDIA, "callback_url": "http://169.254.169.254/latest"}, 422, "url_not_allowed"),
        ({"media_url": UNREACHABLE_MEDIA, "callback_url": "ftp://example.com/hook"}, 422, "invalid_url"),
        ({"media_url": "http://10.1.2.3/private.jpg"}, 422, "url_not_allowed"),
        ({"media_url": "file:///etc/passwd"}, 422, "invalid_url"),
        ({"media_url": UNREACHABLE_MEDIA, "upload_id": "0" * 32}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"media_url": UNREACHABLE_MEDIA, "priority": "urgent"}, 422, "validation_error"),
        ({"media_url": UNREACHABLE_MEDIA, "colour": "blue"}, 422, "validation_error"),
        ({"upload_id": "../../etc"}, 404, "upload_not_found"),
    ],
    ids=[
        "unknown-sampling", "zero-sampling", "big-metadata", "metadata-ip-callback", "ftp-callback",
        "private-media-url", "file-url", "two-media", "no-media", "bad-priority", "unknown-field", "bad-upload-id",
    ],
)  # fmt: skip
def test_invalid_submissions_get_a_problem_with_a_stable_code(
    client: httpx.Client, body: dict, status: int, code: str
) -> None:
    assert_problem(client.post("/v1/jobs", json=body), status, code)


def test_validation_problems_list_the_fields(client: httpx.Client) -> None:
    problem = assert_problem(client.post("/v1/jobs", json={"media_url": 42, "explain": "maybe"}), 422,
                             "validation_error")  # fmt: skip
    locations = {tuple(error["loc"]) for error in problem["errors"]}
    assert ("body", "media_url") in locations and ("body", "explain") in locations
    assert "media_url" in problem["detail"]


def test_multipart_options_are_checked_before_the_file_is_stored(client: httpx.Client) -> None:
    fields = {"sampling": "nope", "metadata": json.dumps({"a": 1})}
    response = client.post("/v1/jobs", data=fields, files={"file": ("p.jpg", b"\xff\xd8\xff" + b"1" * 100)})
    assert_problem(response, 422, "invalid_sampling")
    unknown = client.post("/v1/jobs", data={"colour": "blue"}, files={"file": ("p.jpg", b"\xff\xd8\xff1")})
    assert "colour" in assert_problem(unknown, 422, "validation_error")["detail"]
    no_file = client.post("/v1/jobs", data={"sampling": "fps:1"}, files={"other": ("p.jpg", b"123")})
    assert_problem(no_file, 422, "validation_error")


def test_malformed_bodies_and_types_are_refused(client: httpx.Client) -> None:
    broken = client.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_problem(broken, 400, "invalid_body")
    text = client.post("/v1/jobs", content=b"hello", headers={"Content-Type": "text/plain"})
    assert_problem(text, 415, "unsupported_content_type")
    key = client.post("/v1/jobs", json={"media_url": UNREACHABLE_MEDIA}, headers={"Idempotency-Key": "x" * 300})
    assert_problem(key, 422, "validation_error")


def test_unknown_routes_and_methods_are_problems(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    wrong_method = client.put("/v1/jobs")
    problem = assert_problem(wrong_method, 405, "method_not_allowed")
    assert "GET" in problem["detail"] and "POST" in problem["detail"]


def test_readiness_reports_a_missing_model_without_failing(constrained_gateway: Gateway) -> None:
    """The model is the workers' business: the gateway names it under info and stays ready to take jobs."""
    key = {"Authorization": f"Bearer {constrained_gateway.key('crowded')}"}  # reasons are shown to tenants only
    response = httpx.get(f"{constrained_gateway.url}/readyz", headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checks"] == {"redis": "ok", "object_storage": "ok"}
    assert "/nonexistent/model.onnx" in body["info"]["inference"]
    assert httpx.get(f"{constrained_gateway.url}/healthz").json() == {"status": "ok"}


def test_a_redis_outage_is_a_503_problem_not_a_500(gateway_without_redis: Gateway) -> None:
    ready = httpx.get(f"{gateway_without_redis.url}/readyz")
    assert "redis" in assert_problem(ready, 503, "not_ready")["failed"]
    with gateway_without_redis.client("stranded") as client:
        refused = client.get("/v1/jobs")
        assert "Redis" in assert_problem(refused, 503, "not_ready")["detail"]
        assert refused.headers["retry-after"] == "5"
    assert httpx.get(f"{gateway_without_redis.url}/healthz").status_code == 200  # alive, just not ready

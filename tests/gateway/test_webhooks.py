"""Webhooks through the API: a signed delivery the receiver verifies with its secret, the delivery log, and
redelivery on demand."""

from __future__ import annotations

import json
import uuid

from deepfake_client import verify_signature
from deepfake_client.signing import SIGNATURE_HEADER

from tests.stack.gateway_support import Gateway, assert_problem, submit_file, wait_terminal
from tests.stack.servers import Route


def test_webhook_is_signed_logged_and_redelivered(gateway: Gateway, http_server, photo_bytes: bytes) -> None:  # noqa: ANN001
    path = f"/hooks/{uuid.uuid4().hex}"
    callback = http_server.add(path, Route(status=204))
    with gateway.client("hooks") as client:
        secret = client.get("/v1/webhooks/secret").json()["secret"]
        submitted = submit_file(
            client, photo_bytes, callback_url=callback, metadata=json.dumps({"ticket": 7}), explain="false"
        ).json()
        job = wait_terminal(client, submitted["id"])
        assert job["status"] == "succeeded"

        (delivery,) = http_server.wait_for(path, 1, method="POST")
        headers = {name.lower(): value for name, value in delivery.headers.items()}
        assert verify_signature(secret, headers[SIGNATURE_HEADER.lower()], delivery.body)
        assert not verify_signature(secret + "x", headers[SIGNATURE_HEADER.lower()], delivery.body)
        event = json.loads(delivery.body)
        assert event["type"] == "job.succeeded" and event["job"]["id"] == job["id"]
        assert event["job"]["options"]["metadata"] == {"ticket": 7}

        log = _delivery_log(client, job["id"], attempts=1)
        assert log["event_id"] == event["id"] and log["event_type"] == "job.succeeded"
        assert [(d["attempt"], d["outcome"], d["status_code"]) for d in log["deliveries"]] == [(1, "delivered", 204)]

        queued = client.post(f"/v1/jobs/{job['id']}/deliveries/redeliver")
        assert queued.status_code == 202 and queued.json() == {"job_id": job["id"], "event_id": event["id"],
                                                               "status": "queued"}  # fmt: skip
        second = http_server.wait_for(path, 2, method="POST")[1]
        assert json.loads(second.body)["id"] == event["id"]  # the same event, delivered again
        assert verify_signature(secret, dict(second.headers)[SIGNATURE_HEADER], second.body)


def _delivery_log(client, job_id: str, attempts: int, timeout_s: float = 20.0) -> dict:  # noqa: ANN001
    """The job's delivery log once it lists `attempts` attempts (the worker logs one after the receiver answered)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        log = client.get(f"/v1/jobs/{job_id}/deliveries").json()
        if len(log["deliveries"]) >= attempts or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def test_redelivery_needs_a_callback_and_a_finished_job(gateway: Gateway, http_server) -> None:  # noqa: ANN001
    missing = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(status=404))
    with gateway.client("hooks") as client:
        job = wait_terminal(client, client.post("/v1/jobs", json={"media_url": missing}).json()["id"])
        assert job["status"] == "failed"
        assert_problem(client.post(f"/v1/jobs/{job['id']}/deliveries/redeliver"), 422, "validation_error")
        log = client.get(f"/v1/jobs/{job['id']}/deliveries").json()
        assert log == {"job_id": job["id"], "event_id": None, "event_type": None, "deliveries": []}


INTERNAL_FIELDS = {"tenant_id", "object_key", "result_key", "attempts", "stage_runs"}


def _keys(document: object) -> set[str]:
    """Every key at any depth of a JSON document."""
    if isinstance(document, dict):
        return set(document) | {key for value in document.values() for key in _keys(value)}
    if isinstance(document, list):
        return {key for value in document for key in _keys(value)}
    return set()


def test_the_webhook_body_is_the_public_job_document(gateway: Gateway, http_server, photo_bytes: bytes) -> None:  # noqa: ANN001
    """The receiver gets exactly what GET /v1/jobs/{id} serves, and nothing internal (tenant, object keys)."""
    path = f"/hooks/{uuid.uuid4().hex}"
    callback = http_server.add(path, Route(status=200))
    with gateway.client("hooks") as client:
        submitted = submit_file(client, photo_bytes + uuid.uuid4().bytes, callback_url=callback, explain="false").json()
        job = wait_terminal(client, submitted["id"])
        assert job["status"] == "succeeded"
        (delivery,) = http_server.wait_for(path, 1, method="POST")
        served = client.get(f"/v1/jobs/{job['id']}").json()

    event = json.loads(delivery.body)
    assert event["job"] == served
    assert not _keys(event) & INTERNAL_FIELDS, sorted(_keys(event) & INTERNAL_FIELDS)
    tenant = gateway.tenant_ids["hooks"]
    assert tenant.encode() not in delivery.body, "the tenant id appears nowhere in the body"
    assert b"uploads/" not in delivery.body, "no object key of the media"

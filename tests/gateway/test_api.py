"""The API's description and probes: a valid OpenAPI document with examples everywhere, /healthz, /readyz,
and /metrics with request latency labelled by route template."""

from __future__ import annotations

import re
import uuid

import httpx
from openapi_spec_validator import validate

from tests.stack.gateway_support import Gateway

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def test_openapi_document_is_valid_and_every_operation_has_examples(gateway: Gateway) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    validate(document)
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert {path for path, _, _ in operations} >= {
        "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/uploads",
        "/v1/jobs/{job_id}/deliveries", "/v1/jobs/{job_id}/deliveries/redeliver", "/healthz", "/readyz",
    }  # fmt: skip
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        for status, response in operation["responses"].items():
            for media_type, content in response.get("content", {}).items():
                assert content.get("examples") or content.get("example"), f"{where} {status} {media_type}: no example"
                if media_type == "application/problem+json":
                    assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            if status.startswith(("4", "5")):
                assert "application/problem+json" in response.get("content", {}), f"{where} {status}: not a problem"
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            assert content.get("examples") or content.get("example"), f"{where} request {media_type}: no example"
        secured = not path.startswith(("/healthz", "/readyz", "/metrics"))
        assert bool(operation["security"]) == secured, where
    submit = document["paths"]["/v1/jobs"]["post"]
    assert set(submit["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"202", "401", "409", "413", "422", "429", "503"} <= set(submit["responses"])
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"redis": "ok", "object_storage": "ok"},
        "info": {"inference": "ok"},
    }


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            samples.append((labels, float(match.group(2))))
    return samples


def test_metrics_label_latency_by_route_template(gateway: Gateway) -> None:
    unknown_job = uuid.uuid4().hex
    with gateway.client("beta") as client:
        assert client.get(f"/v1/jobs/{unknown_job}").status_code == 404
        assert client.get("/v1/jobs").status_code == 200
        assert client.get(f"/v1/no-such-thing/{unknown_job}").status_code == 404
    text = httpx.get(f"{gateway.url}/metrics").text
    counts = _samples(text, "deepfake_http_request_duration_seconds_count")
    routes = {labels["route"] for labels, _ in counts}
    assert {"/v1/jobs/{job_id}", "/v1/jobs", "unmatched"} <= routes
    assert not any(unknown_job in route for route in routes), "raw paths must not become labels"
    not_found = [value for labels, value in counts if labels == {"method": "GET", "route": "/v1/jobs/{job_id}",
                                                                 "status": "404"}]  # fmt: skip
    assert not_found and not_found[0] >= 1
    assert _samples(text, "deepfake_queue_depth"), "the queue depth gauge is exported"

"""gRPC beside REST: Submit, Get, Watch and GetResult on the running gateway, the same auth and errors, and the
proto contract kept in agreement with the REST documents (real documents converted both ways)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import pytest
from deepfake_gateway.grpc.proto import (
    REST_ONLY_FIELDS,
    job_pb2,
    result_pb2,
    service_pb2,
    service_pb2_grpc,
    to_document,
    to_message,
)
from google.protobuf import json_format

from tests.stack.gateway_support import Gateway, submit_file, wait_terminal
from tests.stack.servers import Route


@pytest.fixture(scope="module")
def stub(gateway: Gateway) -> Iterator[service_pb2_grpc.DetectionServiceStub]:
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield service_pb2_grpc.DetectionServiceStub(channel)


def auth(gateway: Gateway, tenant: str = "grpc") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {gateway.key(tenant)}"),)


def problem_code(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get("deepfake-problem-code")


def test_submit_watch_get_and_result(stub, gateway: Gateway, photo_bytes: bytes) -> None:  # noqa: ANN001
    metadata = json_format.ParseDict({"case": "grpc-1", "tags": ["a", "b"]}, job_pb2.JobOptions().metadata)
    unique_photo = photo_bytes + uuid.uuid4().bytes  # never answered from the result cache
    request = service_pb2.SubmitRequest(
        content=unique_photo,
        filename="portrait.jpg",
        content_type="image/jpeg",
        options=job_pb2.JobOptions(metadata=metadata, sampling="uniform:4", explain=True),
    )
    job = stub.Submit(request, metadata=auth(gateway), timeout=60)
    assert job.status == job_pb2.JOB_STATUS_QUEUED and len(job.id) == 32
    assert job.media.source == job_pb2.MEDIA_SOURCE_UPLOAD and job.media.size_bytes == len(unique_photo)
    assert json_format.MessageToDict(job.options.metadata) == {"case": "grpc-1", "tags": ["a", "b"]}

    updates = list(stub.Watch(service_pb2.WatchRequest(id=job.id), metadata=auth(gateway), timeout=180))
    statuses = [update.status for update in updates]
    assert statuses[-1] == job_pb2.JOB_STATUS_SUCCEEDED
    assert all(update.status != job_pb2.JOB_STATUS_SUCCEEDED for update in updates[:-1])
    progress = [update.progress for update in updates]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(updates) >= 2, "Watch streams the changes, not only the end"

    fetched = stub.Get(service_pb2.GetRequest(id=job.id), metadata=auth(gateway), timeout=10)
    assert fetched == updates[-1]
    result = stub.GetResult(service_pb2.GetResultRequest(id=job.id), metadata=auth(gateway), timeout=10)
    assert result.job_id == job.id and result.media.sha256 == job.media.sha256
    assert result.verdict == fetched.verdict and result.media.type == result_pb2.MEDIA_TYPE_IMAGE
    assert all(heatmap.ref.startswith("http") for track in result.tracks for heatmap in track.heatmaps)

    with gateway.client("grpc") as client:  # REST and gRPC are one API
        assert to_document(fetched) == without_rest_only_fields(client.get(f"/v1/jobs/{job.id}").json())


def test_submit_by_url_with_idempotency(stub, gateway: Gateway, http_server) -> None:  # noqa: ANN001
    url = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(status=404))
    key = str(uuid.uuid4())
    request = service_pb2.SubmitRequest(media_url=url, idempotency_key=key)
    first = stub.Submit(request, metadata=auth(gateway), timeout=30)
    again, call = stub.Submit.with_call(request, metadata=auth(gateway), timeout=30)
    assert again.id == first.id and ("idempotent-replayed", "true") in call.initial_metadata()
    with pytest.raises(grpc.RpcError) as conflict:
        stub.Submit(service_pb2.SubmitRequest(media_url=url + "?2", idempotency_key=key), metadata=auth(gateway))
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert problem_code(conflict.value) == "idempotency_conflict"
    final = list(stub.Watch(service_pb2.WatchRequest(id=first.id), metadata=auth(gateway), timeout=120))[-1]
    assert final.status == job_pb2.JOB_STATUS_FAILED and final.error.code == "fetch_failed"
    with pytest.raises(grpc.RpcError) as not_finished:
        stub.GetResult(service_pb2.GetResultRequest(id=first.id), metadata=auth(gateway))
    assert not_finished.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert problem_code(not_finished.value) == "job_failed"


def test_grpc_uses_the_same_keys_and_tenant_isolation(stub, gateway: Gateway) -> None:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as anonymous:
        stub.Get(service_pb2.GetRequest(id=uuid.uuid4().hex), timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED and problem_code(anonymous.value) == "unauthorized"
    with pytest.raises(grpc.RpcError) as wrong:
        stub.Get(service_pb2.GetRequest(id=uuid.uuid4().hex), metadata=(("x-api-key", "dfk_wrong"),), timeout=10)
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with gateway.client("alpha") as alpha:
        theirs = alpha.post("/v1/jobs", json={"media_url": "http://127.0.0.1:9/none.jpg"}).json()["id"]
    for call in (
        lambda: stub.Get(service_pb2.GetRequest(id=theirs), metadata=auth(gateway), timeout=10),
        lambda: list(stub.Watch(service_pb2.WatchRequest(id=theirs), metadata=auth(gateway), timeout=10)),
        lambda: stub.GetResult(service_pb2.GetResultRequest(id=theirs), metadata=auth(gateway), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as hidden:
            call()
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND and problem_code(hidden.value) == "job_not_found"
    with pytest.raises(grpc.RpcError) as invalid:
        stub.Submit(service_pb2.SubmitRequest(media_url="http://10.0.0.1/x.jpg"), metadata=auth(gateway))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and problem_code(invalid.value) == "url_not_allowed"


# --- the contract: REST documents and proto messages have the same fields ----------------------------------------


def _normalise(value: Any) -> Any:
    """Timestamps compared as instants (proto writes 'Z' and trims zero fractions), numbers as floats."""
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _field_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a document; list items and map values share one path (`[]`, `{}`)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= _field_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= _field_paths(item, prefix + "[]")
    return paths


def without_rest_only_fields(value: Any) -> Any:
    """The REST document without the fields the proto does not carry yet (grpc.proto.REST_ONLY_FIELDS)."""
    names = frozenset().union(*REST_ONLY_FIELDS.values())
    if isinstance(value, dict):
        return {key: without_rest_only_fields(item) for key, item in value.items() if key not in names}
    if isinstance(value, list):
        return [without_rest_only_fields(item) for item in value]
    return value


def assert_round_trip(document: dict[str, Any], message_class: type) -> None:
    message = to_message(document, message_class)  # unknown REST fields raise here
    back = to_document(message)
    document = without_rest_only_fields(document)
    assert _field_paths(back) == _field_paths(document), (
        f"only in proto: {sorted(_field_paths(back) - _field_paths(document))}; "
        f"only in REST: {sorted(_field_paths(document) - _field_paths(back))}"
    )
    assert _normalise(back) == _normalise(document)


def test_rest_documents_and_proto_messages_agree(gateway: Gateway, http_server, photo_bytes: bytes, job_store) -> None:  # noqa: ANN001
    path = f"/hooks/{uuid.uuid4().hex}"
    callback = http_server.add(path, Route(status=200))
    with gateway.client("grpc") as client:
        metadata = json.dumps({"nested": {"n": 1.5, "ok": True}})
        submitted = submit_file(
            client, photo_bytes + uuid.uuid4().bytes, callback_url=callback, metadata=metadata
        ).json()
        assert_round_trip(submitted, job_pb2.Job)  # queued: many nulls
        finished = wait_terminal(client, submitted["id"])
        assert finished["status"] == "succeeded"
        assert_round_trip(finished, job_pb2.Job)
        result = client.get(f"/v1/jobs/{finished['id']}/result").json()
    assert result["tracks"] and result["tracks"][0]["heatmaps"], "a result with faces and heatmaps"
    assert_round_trip(result, result_pb2.Result)

    delivered = json.loads(http_server.wait_for(path, 1, method="POST")[0].body)  # notify saved the event first
    event = job_store.event_for(finished["id"])
    assert event is not None
    assert delivered["id"] == event.id and delivered["job"] == finished
    assert_round_trip(delivered, job_pb2.WebhookEvent)  # the webhook body as sent is the proto WebhookEvent


def test_a_field_on_one_side_only_is_an_error() -> None:
    with pytest.raises(json_format.ParseError):
        to_message({"id": "x", "status": "queued", "priority_class": "gold"}, job_pb2.Job)
    with pytest.raises(ValueError, match="not a value"):
        to_message({"id": "x", "status": "paused"}, job_pb2.Job)


def test_the_standard_health_service_reports_serving(gateway: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == serving
        named = health_pb2.HealthCheckRequest(service="deepfake.v1.DetectionService")
        assert health.Check(named, timeout=10).status == serving
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

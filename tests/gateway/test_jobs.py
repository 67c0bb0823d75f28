"""The jobs API end to end: real uvicorn gateway, Redis, S3 server and Celery workers on loopback.

Submission paths (multipart upload, media URL, presigned upload), long-polling, idempotency, the result
cache, failures with stable codes, listing, and cancel-and-erase.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from deepfake_jobs.storage import job_prefix, job_record_key, result_prefix, upload_prefix

from tests.stack.gateway_support import Gateway, empty_queue, submit_file, wait_terminal
from tests.stack.servers import Route

PROBLEM_JSON = "application/problem+json"


def test_uploaded_photo_succeeds_with_result_and_presigned_heatmaps(gateway: Gateway, photo_bytes: bytes) -> None:
    with gateway.client("alpha") as client:
        response = submit_file(client, photo_bytes, metadata='{"case": "A-1"}', sampling="uniform:4")
        assert response.status_code == 202, response.text
        submitted = response.json()
        assert response.headers["location"] == f"/v1/jobs/{submitted['id']}"
        assert submitted["status"] == "queued"
        assert submitted["media"]["source"] == "upload"
        assert submitted["media"]["size_bytes"] == len(photo_bytes)
        assert submitted["options"]["metadata"] == {"case": "A-1"}

        job = wait_terminal(client, submitted["id"])
        assert job["status"] == "succeeded", job
        assert job["verdict"] in ("real", "fake", "uncertain", "no_face")
        assert job["finished_at"] is not None and job["options"]["metadata"] == {"case": "A-1"}

        result = client.get(f"/v1/jobs/{job['id']}/result")
        assert result.status_code == 200, result.text
        document = result.json()
        assert document["job_id"] == job["id"] and document["cache_hit"] is False
        assert document["media"]["sha256"] == submitted["media"]["sha256"]
        assert document["verdict"] == job["verdict"]
        heatmaps = [heatmap for track in document["tracks"] for heatmap in track["heatmaps"]]
        assert heatmaps, "the photo has faces, so explanations were produced"
        for heatmap in heatmaps:
            assert re.match(r"^https?://", heatmap["ref"]) and "X-Amz-Signature=" in heatmap["ref"]
        png = httpx.get(heatmaps[0]["ref"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_media_url_job_succeeds(gateway: Gateway, http_server, short_clip: bytes) -> None:  # noqa: ANN001
    url = http_server.add(f"/media/{uuid.uuid4().hex}.mp4", Route(body=short_clip, content_type="video/mp4"))
    with gateway.client("alpha") as client:
        response = client.post("/v1/jobs", json={"media_url": url, "explain": False})
        assert response.status_code == 202, response.text
        assert response.json()["media"] == {
            "source": "url", "url": url, "filename": None, "content_type": None, "size_bytes": None, "sha256": None,
        }  # fmt: skip
        job = wait_terminal(client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["media"]["size_bytes"] == len(short_clip)
    assert http_server.received(url.removeprefix(http_server.url("")), "GET")


def test_presigned_upload_job_succeeds(gateway: Gateway, photo_bytes: bytes) -> None:
    with gateway.client("alpha") as client:
        upload = client.post("/v1/uploads", json={"filename": "portrait.jpg", "content_type": "image/jpeg"})
        assert upload.status_code == 201, upload.text
        ticket = upload.json()
        assert ticket["method"] == "PUT" and ticket["headers"] == {"Content-Type": "image/jpeg"}

        early = client.post("/v1/jobs", json={"upload_id": ticket["upload_id"]})
        assert early.status_code == 404 and early.json()["code"] == "upload_not_found"

        put = httpx.put(ticket["upload_url"], content=photo_bytes, headers=ticket["headers"])
        assert put.status_code == 200, put.text
        response = client.post("/v1/jobs", json={"upload_id": ticket["upload_id"], "priority": "high"})
        assert response.status_code == 202, response.text
        submitted = response.json()
        assert submitted["id"] == ticket["upload_id"]
        assert submitted["media"]["source"] == "presigned" and submitted["media"]["filename"] == "portrait.jpg"
        assert submitted["media"]["size_bytes"] == len(photo_bytes)
        job = wait_terminal(client, submitted["id"])
    assert job["status"] == "succeeded", job
    assert job["options"]["priority"] == "high"


def test_upload_ids_belong_to_their_tenant(gateway: Gateway, photo_bytes: bytes) -> None:
    with gateway.client("alpha") as alpha, gateway.client("beta") as beta:
        ticket = alpha.post("/v1/uploads", json={"content_type": "image/jpeg"}).json()
        assert httpx.put(ticket["upload_url"], content=photo_bytes, headers=ticket["headers"]).status_code == 200
        stolen = beta.post("/v1/jobs", json={"upload_id": ticket["upload_id"]})
        assert stolen.status_code == 404 and stolen.json()["code"] == "upload_not_found"


def test_long_poll_answers_when_the_status_changes(gateway: Gateway, short_clip: bytes) -> None:
    with gateway.client("alpha") as client:
        job_id = submit_file(client, short_clip, "clip.mp4", explain="false").json()["id"]
        first = client.get(f"/v1/jobs/{job_id}").json()
        assert first["status"] in ("queued", "processing")
        # A long-poll returns when the status changes, or after its bound of 20 s; on a busy machine the job may
        # stay queued or processing longer than that, so poll again until it moves.
        deadline = time.monotonic() + 120
        changed = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
        while changed["status"] == first["status"]:
            assert time.monotonic() < deadline, f"the job never moved from {first}"
            changed = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
        seen = {first["status"], changed["status"]}
        job = changed
        while job["status"] not in ("succeeded", "failed", "canceled"):
            job = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
            seen.add(job["status"])
            if job["status"] == "processing":
                assert job["stage"] in ("fetch", "preprocess", "inference", "explain")
                assert 0 <= job["progress"] <= 100
        assert job["status"] == "succeeded" and job["stage"] is None and job["progress"] == 100
        # A finished job answers a long-poll at once, unchanged.
        assert client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()["updated_at"] == job["updated_at"]


def test_long_poll_is_bounded_for_a_job_that_does_not_move(constrained_gateway: Gateway, job_store) -> None:  # noqa: ANN001
    empty_queue(job_store.redis, constrained_gateway.first_queue)
    with constrained_gateway.client("crowded") as client:
        job_id = client.post("/v1/jobs", json={"media_url": "http://127.0.0.1:9/x.jpg"}).json()["id"]
        waited = client.get(f"/v1/jobs/{job_id}", params={"wait": 1})
        assert waited.status_code == 200 and waited.json()["status"] == "queued"
        negative = client.get(f"/v1/jobs/{job_id}", params={"wait": -1})
        assert negative.status_code == 422 and negative.json()["code"] == "validation_error"
        not_yet = client.get(f"/v1/jobs/{job_id}/result")
        assert not_yet.status_code == 409
        assert not_yet.headers["content-type"] == PROBLEM_JSON and not_yet.json()["code"] == "job_not_finished"


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(gateway: Gateway, http_server) -> None:  # noqa: ANN001
    url = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(status=404))
    key = f"key-{uuid.uuid4()}"
    with gateway.client("alpha") as client:
        first = client.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key})
        again = client.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key})
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        other = client.post("/v1/jobs", json={"media_url": url + "?v=2"}, headers={"Idempotency-Key": key})
        assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
        assert first.json()["id"] in other.json()["detail"]
    with gateway.client("beta") as beta:  # keys are per tenant
        theirs = beta.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key})
        assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


def test_an_idempotency_key_is_free_again_once_its_job_was_deleted(gateway: Gateway, http_server) -> None:  # noqa: ANN001
    url = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(status=404))
    key = f"key-{uuid.uuid4()}"
    with gateway.client("alpha") as client:
        first = client.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key}).json()
        assert client.delete(f"/v1/jobs/{first['id']}").status_code in (200, 202, 204)
        assert client.get(f"/v1/jobs/{first['id']}").status_code == 404
        retry = client.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key})
        assert retry.status_code == 202, retry.text
        assert retry.json()["id"] != first["id"] and "idempotent-replayed" not in retry.headers
        again = client.post("/v1/jobs", json={"media_url": url}, headers={"Idempotency-Key": key})
        assert again.json()["id"] == retry.json()["id"] and again.headers["idempotent-replayed"] == "true"
        wait_terminal(client, retry.json()["id"])


def test_idempotency_key_on_uploads(gateway: Gateway, short_clip: bytes, photo_bytes: bytes) -> None:
    key = f"upload-{uuid.uuid4()}"
    with gateway.client("alpha") as client:
        first = submit_file(client, short_clip, "clip.mp4", idempotency_key=key, explain="false")
        again = submit_file(client, short_clip, "clip.mp4", idempotency_key=key, explain="false")
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        other = submit_file(client, photo_bytes, "clip.mp4", idempotency_key=key, explain="false")
        assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
        wait_terminal(client, first.json()["id"])


def _inference_calls(worker_metrics_url: str) -> float:
    text = httpx.get(worker_metrics_url).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("deepfake_inference_duration_seconds_count")
    )


def test_identical_media_is_answered_from_the_result_cache(gateway: Gateway, celery_worker, photo_bytes: bytes) -> None:  # noqa: ANN001
    unique_photo = photo_bytes + uuid.uuid4().bytes  # bytes after the JPEG's end marker: same image, new hash
    with gateway.client("alpha") as client:
        first = wait_terminal(client, submit_file(client, unique_photo, "a.jpg").json()["id"])
        assert first["status"] == "succeeded" and first["cache_hit"] is False, first
        calls_before = _inference_calls(celery_worker.url)
        second = wait_terminal(client, submit_file(client, unique_photo, "b.jpg").json()["id"])
        assert second["status"] == "succeeded" and second["cache_hit"] is True, second
        assert _inference_calls(celery_worker.url) == calls_before
        first_result = client.get(f"/v1/jobs/{first['id']}/result").json()
        second_result = client.get(f"/v1/jobs/{second['id']}/result").json()
    assert second_result["cache_hit"] is True and second_result["job_id"] == second["id"]
    assert second_result["score"] == first_result["score"] and second_result["verdict"] == first_result["verdict"]
    assert "inference" not in second["stage_timings_ms"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"this is a text file, not an image or a video\n" * 20, "unsupported_media"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 600, "corrupt_media"),
    ],
    ids=["not-media", "truncated-jpeg"],
)
def test_bad_media_fails_with_a_stable_code(gateway: Gateway, payload: bytes, code: str) -> None:
    with gateway.client("alpha") as client:
        job = wait_terminal(client, submit_file(client, payload, "bad.jpg").json()["id"])
        assert job["status"] == "failed"
        assert job["error"]["code"] == code and job["error"]["message"]
        refused = client.get(f"/v1/jobs/{job['id']}/result")
    assert refused.status_code == 409 and refused.json()["code"] == "job_failed"
    assert code in refused.json()["detail"]


def test_listing_pages_through_the_tenants_jobs_with_a_status_filter(gateway: Gateway, http_server) -> None:  # noqa: ANN001
    missing = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(status=404))
    with gateway.client("lister") as client:
        ids = [client.post("/v1/jobs", json={"media_url": missing}).json()["id"] for _ in range(3)]
        for job_id in ids:
            assert wait_terminal(client, job_id)["status"] == "failed"
        first = client.get("/v1/jobs", params={"limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert [job["id"] for job in page["jobs"]] == ids[::-1][:2] and page["next_cursor"]
        rest = client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [job["id"] for job in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
        failed = client.get("/v1/jobs", params={"status": "failed"}).json()
        assert {job["id"] for job in failed["jobs"]} == set(ids)
        assert client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"] == []
        bad = client.get("/v1/jobs", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"
        unknown_status = client.get("/v1/jobs", params={"status": "sleeping"})
        assert unknown_status.status_code == 422 and unknown_status.json()["code"] == "validation_error"


def _objects_of(object_store, tenant_id: str, job_id: str) -> list[str]:  # noqa: ANN001
    prefixes = (upload_prefix(tenant_id, job_id), job_prefix(job_id), result_prefix(job_id))
    return [key for prefix in prefixes for key in object_store.list_keys(prefix)]


def _wait_for_final_record(object_store, job_id: str, timeout_s: float = 15.0) -> None:  # noqa: ANN001
    """The worker mirrors a finished job to object storage just after it turns terminal in Redis."""
    deadline = time.monotonic() + timeout_s
    while not object_store.exists(job_record_key(job_id)):
        assert time.monotonic() < deadline, f"job {job_id} has no final record in object storage"
        time.sleep(0.1)


def test_delete_erases_a_finished_jobs_media_results_and_heatmaps(
    gateway: Gateway,
    object_store,
    photo_bytes: bytes,  # noqa: ANN001
) -> None:
    tenant_id = gateway.tenant_ids["alpha"]
    with gateway.client("alpha") as client:
        job = wait_terminal(client, submit_file(client, photo_bytes + uuid.uuid4().bytes).json()["id"])
        assert job["status"] == "succeeded"
        _wait_for_final_record(object_store, job["id"])
        stored = _objects_of(object_store, tenant_id, job["id"])
        assert any(key.endswith("/media") for key in stored) and any(key.endswith(".png") for key in stored)
        deleted = client.delete(f"/v1/jobs/{job['id']}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "succeeded"
        assert _objects_of(object_store, tenant_id, job["id"]) == []
        gone = client.get(f"/v1/jobs/{job['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "job_not_found"
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404


def test_delete_cancels_a_queued_job_and_erases_its_upload(
    constrained_gateway: Gateway,
    object_store,
    job_store,  # noqa: ANN001
) -> None:
    empty_queue(job_store.redis, constrained_gateway.first_queue)
    tenant_id = constrained_gateway.tenant_ids["crowded"]
    with constrained_gateway.client("crowded") as client:
        submitted = submit_file(client, b"\xff\xd8\xff" + b"x" * 1000).json()
        assert _objects_of(object_store, tenant_id, submitted["id"]) == [
            upload_prefix(tenant_id, submitted["id"]) + "media"
        ]
        canceled = client.delete(f"/v1/jobs/{submitted['id']}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert _objects_of(object_store, tenant_id, submitted["id"]) == []
        assert client.get(f"/v1/jobs/{submitted['id']}").status_code == 404


def test_a_job_deleted_while_a_stage_runs_stops_quietly_and_leaves_nothing(
    gateway: Gateway,
    http_server,  # noqa: ANN001
    celery_worker,  # noqa: ANN001
    object_store,  # noqa: ANN001
    short_clip: bytes,
) -> None:
    """DELETE during the fetch stage: the stage ends as canceled (no JobNotFound, no retry), and the media it
    downloads after the erase is never stored; the rest of the chain runs through to its end."""
    import threading

    release = threading.Event()
    path = f"/held/{uuid.uuid4().hex}.mp4"
    url = http_server.add(path, Route(body=short_clip + uuid.uuid4().bytes, content_type="video/mp4", hold=release))
    tenant_id = gateway.tenant_ids["alpha"]
    with gateway.client("alpha") as client:
        job_id = client.post("/v1/jobs", json={"media_url": url}).json()["id"]
        http_server.wait_for(path)  # the fetch stage is downloading
        deleted = client.delete(f"/v1/jobs/{job_id}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "canceled"
        release.set()  # the download finishes after the erase

        chain_end = re.compile(rf"Task deepfake\.notify\[[\w-]+\] succeeded in [\d.]+s: '{job_id}'")
        deadline = time.monotonic() + 60
        while not chain_end.search(celery_worker.log_path.read_text(errors="replace")):
            assert time.monotonic() < deadline, "the job's chain did not run to its end"
            time.sleep(0.2)
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404

    assert _objects_of(object_store, tenant_id, job_id) == [], "nothing was written after the erase"
    lines = [line for line in celery_worker.log_path.read_text(errors="replace").splitlines() if job_id in line]
    assert any("was canceled or erased while fetch ran" in line for line in lines), lines
    noisy = [line for line in lines if re.search(r"JobNotFound|unexpected|retry|ERROR|Traceback", line)]
    assert noisy == []

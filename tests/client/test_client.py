"""The Python client and `deepfake-detect submit` against the running service, and webhook signatures."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from deepfake_client import ApiError, DeepfakeClient, sign, verify_signature
from deepfake_client.cli import main as cli_main
from deepfake_client.client import WaitTimeout

from tests.stack.gateway_support import Gateway, empty_queue
from tests.stack.servers import Route


@pytest.fixture
def client(gateway: Gateway) -> DeepfakeClient:
    with DeepfakeClient(gateway.url, gateway.key("client")) as client:
        yield client


def test_submit_file_wait_and_result(client: DeepfakeClient, tmp_path: Path, photo_bytes: bytes) -> None:
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(photo_bytes + uuid.uuid4().bytes)
    seen: list[str] = []
    job = client.submit_file(photo, metadata={"source": "client-test"}, sampling="uniform:4")
    assert job.status == "queued" and job.document["media"]["filename"] == "portrait.jpg"
    finished = client.wait(job.id, timeout_s=180, on_update=lambda update: seen.append(update.status))
    assert finished.status == "succeeded" and finished.terminal and seen[-1] == "succeeded"
    result = client.result(job.id)
    assert result["job_id"] == job.id and result["verdict"] == finished.verdict
    assert result["media"]["size_bytes"] == photo.stat().st_size
    assert job.id in {listed.id for listed in client.iter_jobs(status="succeeded", page_size=1)}


def test_submit_url_and_presigned(client: DeepfakeClient, http_server, photo_bytes: bytes) -> None:  # noqa: ANN001
    url = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(body=photo_bytes, content_type="image/jpeg"))
    by_url = client.submit_url(url, explain=False)
    presigned = client.submit_presigned(io.BytesIO(photo_bytes + uuid.uuid4().bytes), filename="big.jpg", explain=False)
    assert presigned.document["media"]["source"] == "presigned"
    assert client.wait(by_url.id, timeout_s=180).status == "succeeded"
    assert client.wait(presigned.id, timeout_s=180).status == "succeeded"


def test_errors_carry_the_problem_code(gateway: Gateway, client: DeepfakeClient) -> None:
    with DeepfakeClient(gateway.url, "dfk_wrong") as stranger, pytest.raises(ApiError) as refused:
        stranger.list()
    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    with pytest.raises(ApiError) as missing:
        client.get(uuid.uuid4().hex)
    assert missing.value.code == "job_not_found"
    with pytest.raises(ApiError) as invalid:
        client.submit_url("http://127.0.0.1:9/x.jpg", sampling="sometimes")
    assert invalid.value.code == "invalid_sampling" and "uniform:N" in invalid.value.detail


def test_cancel_and_wait_timeout(constrained_gateway: Gateway, job_store) -> None:  # noqa: ANN001
    empty_queue(job_store.redis, constrained_gateway.first_queue)
    with DeepfakeClient(constrained_gateway.url, constrained_gateway.key("other")) as stuck:
        job = stuck.submit_url("http://127.0.0.1:9/never.jpg")
        with pytest.raises(WaitTimeout) as timeout:
            stuck.wait(job.id, timeout_s=1)
        assert timeout.value.job.status == "queued"
        with pytest.raises(ApiError) as early:
            stuck.result(job.id)
        assert early.value.code == "job_not_finished"
        assert stuck.cancel(job.id).status == "canceled"
        with pytest.raises(ApiError) as gone:
            stuck.get(job.id)
        assert gone.value.status == 404


def test_submission_retries_reuse_the_idempotency_key(constrained_gateway: Gateway, job_store) -> None:  # noqa: ANN001
    empty_queue(job_store.redis, constrained_gateway.first_queue)
    with DeepfakeClient(constrained_gateway.url, constrained_gateway.key("other"), max_retries=0) as once:
        key = str(uuid.uuid4())
        first = once.submit_url("http://127.0.0.1:9/a.jpg", idempotency_key=key)
        second = once.submit_url("http://127.0.0.1:9/a.jpg", idempotency_key=key)
        assert first.id == second.id


def test_cli_submit_wait_json(gateway: Gateway, tmp_path: Path, photo_bytes: bytes, capsys) -> None:  # noqa: ANN001
    photo = tmp_path / "cli.jpg"
    photo.write_bytes(photo_bytes + uuid.uuid4().bytes)
    status = cli_main([str(photo), "--wait", "--json", "--url", gateway.url, "--api-key", gateway.key("client"),
                       "--sampling", "uniform:4", "--metadata", '{"via": "cli"}'])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["file"] == str(photo) and report["job"]["status"] == "succeeded"
    assert report["job"]["options"]["metadata"] == {"via": "cli"}
    assert report["result"]["job_id"] == report["job"]["id"]


def test_cli_reports_refusals_with_exit_status_2(
    gateway: Gateway,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    assert cli_main([str(photo), "--url", gateway.url, "--api-key", "dfk_wrong"]) == 2
    assert "unauthorized" in capsys.readouterr().err
    monkeypatch.delenv("DEEPFAKE_API_KEY", raising=False)
    assert cli_main([str(photo), "--url", gateway.url]) == 2
    assert "no API key" in capsys.readouterr().err
    assert cli_main([str(photo), "--url", gateway.url, "--api-key", "k", "--metadata", "[1]"]) == 2


def test_cli_text_output_and_failed_jobs(gateway: Gateway, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"plain text, not an image\n" * 10)
    status = cli_main([str(bad), "--wait", "--url", gateway.url, "--api-key", gateway.key("client")])
    out = capsys.readouterr().out
    assert status == 1
    assert "failed (unsupported_media:" in out


def test_signatures_round_trip_and_refuse_tampering() -> None:
    body = b'{"id": "evt_1", "type": "job.succeeded"}'
    header = sign("whsec_test", body)
    assert verify_signature("whsec_test", header, body)
    assert not verify_signature("whsec_other", header, body)
    assert not verify_signature("whsec_test", header, body + b" ")
    assert not verify_signature("whsec_test", None, body) and not verify_signature("whsec_test", "garbage", body)
    stale = sign("whsec_test", body, timestamp=int(time.time()) - 3600)
    assert not verify_signature("whsec_test", stale, body)
    assert verify_signature("whsec_test", stale, body, tolerance_s=0)
    rotated = header + ",v1=" + "0" * 64  # several signatures during a secret rotation: any match is enough
    assert verify_signature("whsec_test", rotated, body)


def test_the_platform_signs_with_the_clients_function() -> None:
    from deepfake_jobs import webhooks

    assert webhooks.verify_signature is verify_signature
    body = b"{}"
    assert verify_signature("s", webhooks.signature_header("s", body), body)


def test_the_client_imports_no_server_dependencies() -> None:
    code = (
        "import sys, deepfake_client, deepfake_client.cli; "
        "heavy = [m for m in ('redis', 'minio', 'celery', 'deepfake_jobs', 'fastapi', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == ""

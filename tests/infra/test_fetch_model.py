"""The workers' init container for the onnxruntime backend (charts/deepfake-platform/files/fetch-model.py), run as
the pod runs it, against a real S3 server: it copies the newest (or the pinned) version of the model, and the
worker's own model lookup then finds that file."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deepfake_devstack import S3Server

from tests.infra.conftest import CHART_DIR

SCRIPT = CHART_DIR / "files" / "fetch-model.py"
BUCKET = "models"
PREFIX = "releases/2/model_repository/gpu"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        server.ensure_bucket(BUCKET)
        client = server.minio_client()
        for key, data in {
            f"{PREFIX}/deepfake_detector/config.pbtxt": b"name: deepfake_detector",
            f"{PREFIX}/deepfake_detector/1/model.onnx": b"version one",
            f"{PREFIX}/deepfake_detector/2/model.onnx": b"version two",
            f"{PREFIX}/deepfake_detector/10-draft/model.onnx": b"not a version",
            f"{PREFIX}/other_model/7/model.onnx": b"another model",
        }.items():
            client.put_object(BUCKET, key, io.BytesIO(data), len(data))
        yield server


def fetch(server: S3Server, target: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": "/usr/bin:/bin",
        "DEEPFAKE_ENVIRONMENT": "production",
        "DEEPFAKE_S3_ENDPOINT": server.url,
        "DEEPFAKE_S3_ACCESS_KEY": server.access_key,
        "DEEPFAKE_S3_SECRET_KEY": server.secret_key,
        "DEEPFAKE_WEBHOOK_SIGNING_KEY": "a-real-signing-key",
        "DEEPFAKE_MODEL_BUCKET": BUCKET,
        "DEEPFAKE_MODEL_PREFIX": PREFIX,
        "DEEPFAKE_MODEL_NAME": "deepfake_detector",
        "DEEPFAKE_MODEL_VERSION": "",
        "DEEPFAKE_MODEL_REPOSITORY": str(target),
        **overrides,
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60, cwd=target.parent
    )


def test_the_newest_version_is_fetched_where_the_worker_looks(s3_server: S3Server, tmp_path: Path) -> None:
    from deepfake_core.model_files import resolve_model_path
    from deepfake_core.settings import CoreSettings

    target = tmp_path / "models"
    completed = fetch(s3_server, target)
    assert completed.returncode == 0, completed.stderr
    fetched = target / "deepfake_detector" / "2" / "model.onnx"
    assert fetched.read_bytes() == b"version two"
    assert sorted(path.name for path in (target / "deepfake_detector").iterdir()) == ["2"]
    found = resolve_model_path(CoreSettings(model_repository=target, model_name="deepfake_detector"))
    assert found == fetched


def test_a_pinned_version_is_fetched(s3_server: S3Server, tmp_path: Path) -> None:
    completed = fetch(s3_server, tmp_path / "models", DEEPFAKE_MODEL_VERSION="1")
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "models" / "deepfake_detector" / "1" / "model.onnx").read_bytes() == b"version one"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [({"DEEPFAKE_MODEL_VERSION": "5"}, "has no version 5"), ({"DEEPFAKE_MODEL_PREFIX": "empty"}, "no model.onnx")],
)
def test_a_missing_model_stops_the_pod_with_a_reason(
    s3_server: S3Server, tmp_path: Path, overrides: dict[str, str], complaint: str
) -> None:
    completed = fetch(s3_server, tmp_path / "models", **overrides)
    assert completed.returncode == 1
    assert complaint in completed.stderr and "Traceback" not in completed.stderr

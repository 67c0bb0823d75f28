"""Worker settings: the platform's and the worker's own, read from DEEPFAKE_* variables."""

from __future__ import annotations

import pytest
from deepfake_worker.settings import WorkerSettings


def test_variables_are_read_with_the_deepfake_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPFAKE_FETCH_ALLOWLIST", "127.0.0.1, media.internal,10.0.0.0/8")
    monkeypatch.setenv("DEEPFAKE_S3_ENDPOINT", "https://minio.example.org:9000")
    monkeypatch.setenv("DEEPFAKE_INFERENCE_BACKEND", "triton")
    monkeypatch.setenv("DEEPFAKE_METRICS_PORT", "9100")
    settings = WorkerSettings()
    assert settings.fetch_allowlist == ["127.0.0.1", "media.internal", "10.0.0.0/8"]
    assert settings.s3_host == "minio.example.org:9000" and settings.s3_use_tls
    assert settings.inference_backend == "triton" and settings.metrics_port == 9100

"""Metrics end to end: a real Prometheus scrapes the test stack's gateway and Celery worker, and its HTTP API
shows the job counter and the gateway's request histogram moving with a job submitted through the API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from deepfake_devstack import PrometheusServer, ensure_system_programs
from deepfake_devstack.ports import LOOPBACK

from tests.stack.gateway_support import Gateway, wait_terminal

SCRAPE_WAIT_S = 40.0  # a few 2 s scrape intervals, with room for a busy machine

JOBS_SUCCEEDED = 'sum(deepfake_jobs_total{job="deepfake-worker",state="succeeded",media_type="image"})'
SUBMITS_ACCEPTED = (
    'sum(deepfake_http_request_duration_seconds_count{job="deepfake-gateway",method="POST",route="/v1/jobs",'
    'status="202"})'
)
SUBMIT_P99 = (
    "histogram_quantile(0.99, sum by (le) (deepfake_http_request_duration_seconds_bucket"
    '{job="deepfake-gateway",method="POST",route="/v1/jobs"}))'
)


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway, celery_worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:  # noqa: ANN001
    """Prometheus scraping the session's gateway and worker every 2 s."""
    ensure_system_programs()
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "deepfake-gateway", "static_configs": [{"targets": [gateway.url.removeprefix("http://")]}]},
            {
                "job_name": "deepfake-worker",
                "static_configs": [{"targets": [f"{LOOPBACK}:{celery_worker.metrics_port}"]}],
            },
        ],
    }
    config_path = folder / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    with PrometheusServer(config_path, data_dir=folder / "tsdb", log_path=folder / "prometheus.log") as server:
        yield server


def _poll(read: Callable[[], float | None], done: Callable[[float | None], bool], what: str) -> float | None:
    """Query until `done(value)`; fails after SCRAPE_WAIT_S with the last value seen."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {value} after {SCRAPE_WAIT_S} s")
        time.sleep(0.5)
        value = read()
    return value


def _scalar(server: PrometheusServer, expression: str) -> float | None:
    """The value of a one-sample query, or None while the series does not exist."""
    samples = server.query(expression)
    return float(samples[0]["value"][1]) if samples else None


def test_prometheus_sees_the_job_counter_and_the_gateway_histogram_move(
    prometheus: PrometheusServer, gateway: Gateway, media_dir: Path
) -> None:
    def targets_up() -> float | None:
        health = {target["labels"]["job"]: target["health"] for target in prometheus.active_targets()}
        return 1.0 if health == {"deepfake-gateway": "up", "deepfake-worker": "up"} else None

    _poll(targets_up, lambda up: up == 1.0, "the gateway and worker targets being up")
    # The series may already exist (earlier jobs of the session) or not yet: compare with what Prometheus has now.
    jobs_before = _scalar(prometheus, JOBS_SUCCEEDED) or 0.0
    submits_before = _scalar(prometheus, SUBMITS_ACCEPTED) or 0.0

    photo = (media_dir / "sample1.jpg").read_bytes() + uuid.uuid4().bytes  # not in the result cache
    with gateway.client("alpha") as client:
        submitted = client.post("/v1/jobs", files={"file": ("p.jpg", photo, "image/jpeg")}, data={"explain": "false"})
        assert submitted.status_code == 202, submitted.text
        assert wait_terminal(client, submitted.json()["id"])["status"] == "succeeded"

    jobs = _poll(
        lambda: _scalar(prometheus, JOBS_SUCCEEDED),
        lambda value: value is not None and value >= jobs_before + 1,
        "deepfake_jobs_total{state=succeeded} counting the job",
    )
    assert jobs is not None and jobs >= 1
    _poll(
        lambda: _scalar(prometheus, SUBMITS_ACCEPTED),
        lambda value: value is not None and value >= submits_before + 1,
        "the gateway's request histogram counting the submission",
    )
    p99 = _scalar(prometheus, SUBMIT_P99)
    assert p99 is not None and 0 < p99 < float("inf"), "the submit latency buckets give a finite quantile"

"""Helpers of the gateway tests: the handle of a running gateway, waiting through the API, problem checks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from deepfake_jobs.queues import PRIORITY_SEP, PRIORITY_STEPS

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Gateway:
    url: str
    grpc_target: str
    keys: dict[str, str]  # tenant id -> API key
    tenant_ids: dict[str, str]  # short name -> tenant id (unique per session)
    log_path: Path
    first_queue: str = "preprocess"

    def client(self, tenant: str, **kwargs: object) -> httpx.Client:
        """An httpx client authenticated as `tenant` (a short name of TENANT_LIMITS)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key(tenant)}"},
            timeout=kwargs.pop("timeout", 60.0),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    def key(self, tenant: str) -> str:
        return self.keys[self.tenant_ids[tenant]]


def empty_queue(redis_client, queue: str) -> None:  # noqa: ANN001
    """Drop every message of a Celery queue (all its priority lists): the constrained gateway's reset."""
    redis_client.delete(queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS))


def submit_file(client: httpx.Client, data: bytes, name: str = "photo.jpg", **fields: str) -> httpx.Response:
    """POST /v1/jobs with an upload; `fields` are the form fields, `idempotency_key` goes in its header."""
    content_type = "video/mp4" if name.endswith(".mp4") else "image/jpeg"
    headers = {"Idempotency-Key": fields.pop("idempotency_key")} if "idempotency_key" in fields else {}
    return client.post("/v1/jobs", files={"file": (name, data, content_type)}, data=fields, headers=headers)


def wait_terminal(client: httpx.Client, job_id: str, timeout_s: float = 180.0) -> dict:
    """Long-poll the job until it is finished, through the API."""
    deadline = time.monotonic() + timeout_s
    job = client.get(f"/v1/jobs/{job_id}").json()
    while job["status"] not in ("succeeded", "failed", "canceled"):
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s: {job}")
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 15})
        assert response.status_code == 200, response.text
        job = response.json()
    return job


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    """The response is an application/problem+json document with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == status and problem["code"] == code
    assert problem["type"] == f"urn:deepfake:problem:{code}"
    assert problem["title"] and problem["detail"]
    return problem

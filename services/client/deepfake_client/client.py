"""`DeepfakeClient`: the REST API of the detection service from Python, with safe retries.

Submissions carry an Idempotency-Key (generated unless given), so a submission retried after a timeout,
a 429 or a 503 can never create a second job. Waiting uses the server's long-poll (`?wait=`), not a
tight polling loop. Errors raise `ApiError` with the problem document's stable `code`.
"""

from __future__ import annotations

import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 3
LONG_POLL_S = 25.0
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "deepfake-client/0.1"


class ApiError(Exception):
    """The service refused or failed a request; `code` is the problem document's stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        retry_after_s: float | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.retry_after_s = retry_after_s
        self.problem = dict(problem or {})

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        retry_after = response.headers.get("retry-after")
        return cls(
            response.status_code,
            str(problem.get("code") or f"http_{response.status_code}"),
            str(problem.get("detail") or response.reason_phrase or "request failed"),
            title=problem.get("title"),
            retry_after_s=float(retry_after) if retry_after and retry_after.isdigit() else None,
            problem=problem,
        )


class WaitTimeout(TimeoutError):
    """The job did not finish within the time given to `wait`; `job` is its last known state."""

    def __init__(self, job: Job, timeout_s: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout_s:.0f} s")
        self.job = job


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as the API reports it; `document` holds every field of the JSON."""

    id: str
    status: str
    stage: str | None
    progress: int
    error: JobError | None
    verdict: str | None
    cache_hit: bool
    document: dict[str, Any] = field(repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Job:
        error = document.get("error")
        return cls(
            id=str(document["id"]),
            status=str(document["status"]),
            stage=document.get("stage"),
            progress=int(document.get("progress") or 0),
            error=JobError(str(error["code"]), str(error["message"])) if error else None,
            verdict=document.get("verdict"),
            cache_hit=bool(document.get("cache_hit")),
            document=dict(document),
        )


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


FileInput = str | os.PathLike[str] | IO[bytes]


class DeepfakeClient:
    """Client of one deployment: `DeepfakeClient("https://api.example.com", api_key="dfk_...")`.

    Thread-safe as httpx.Client is; use it as a context manager or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.max_retries = max_retries
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
        )

    def __enter__(self) -> DeepfakeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- submitting -------------------------------------------------------------------------------------------

    def submit_file(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Upload a file (streamed, not read into memory) and queue it; options: callback_url, metadata,
        priority ('low'|'normal'|'high'), sampling ('windows:2', 'uniform:32', 'fps:1'; unset = the model's
        training windows), explain (bool)."""
        name = filename or _file_name(file)
        mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        fields = _form_fields(options)
        headers = _idempotency(idempotency_key or str(uuid.uuid4()))

        def send() -> httpx.Response:
            with _open(file) as handle:
                return self._http.post("/v1/jobs", data=fields, files={"file": (name, handle, mime)}, headers=headers)

        return Job.from_document(self._send(send, retry=True).json())

    def submit_url(self, media_url: str, *, idempotency_key: str | None = None, **options: Any) -> Job:
        """Queue media the service downloads from a public http(s) URL."""
        key = idempotency_key or str(uuid.uuid4())
        body = {"media_url": media_url, **_json_options(options)}
        return Job.from_document(self._request("POST", "/v1/jobs", json=body, headers=_idempotency(key)).json())

    def submit_presigned(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Upload straight to object storage through a presigned URL (large files), then queue the job."""
        name = filename or _file_name(file)
        mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        upload = self.create_upload(filename=name, content_type=mime)
        with _open(file) as handle:
            response = httpx.put(
                upload["upload_url"], content=_chunks(handle), headers=upload["headers"], timeout=self._http.timeout
            )
        if response.status_code >= 300:
            raise ApiError(
                response.status_code, "upload_failed", f"The PUT to object storage failed: {response.text[:200]}"
            )
        key = idempotency_key or str(uuid.uuid4())
        body = {"upload_id": upload["upload_id"], **_json_options(options)}
        return Job.from_document(self._request("POST", "/v1/jobs", json=body, headers=_idempotency(key)).json())

    def create_upload(
        self, *, filename: str | None = None, content_type: str = "application/octet-stream"
    ) -> dict[str, Any]:
        """A presigned upload: {upload_id, upload_url, headers, expires_at, max_bytes}."""
        body = {"filename": filename, "content_type": content_type}
        return self._request("POST", "/v1/uploads", json=body).json()

    # --- following ------------------------------------------------------------------------------------------------

    def get(self, job_id: str, *, wait_s: float | None = None) -> Job:
        """The job now; with `wait_s`, the server holds the request until its status changes (bounded)."""
        if not wait_s:
            return Job.from_document(self._request("GET", f"/v1/jobs/{job_id}").json())
        # The server answers within wait_s (it bounds it further); the read timeout must outlast that.
        timeout = httpx.Timeout(wait_s + (self._http.timeout.read or DEFAULT_TIMEOUT_S), connect=10.0)
        params = {"wait": f"{wait_s:g}"}
        return Job.from_document(self._request("GET", f"/v1/jobs/{job_id}", params=params, timeout=timeout).json())

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Long-poll until the job is finished (succeeded, failed or canceled); WaitTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = self.get(job_id)
        last = None
        while True:
            if on_update is not None and (job.status, job.stage, job.progress) != last:
                last = (job.status, job.stage, job.progress)
                on_update(job)
            if job.terminal:
                return job
            remaining = LONG_POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(job, timeout_s or 0.0)
            job = self.get(job_id, wait_s=max(1.0, min(LONG_POLL_S, remaining)))

    def result(self, job_id: str) -> dict[str, Any]:
        """The result document (ApiError 409 'job_not_finished' / 'job_failed' before it exists)."""
        return self._request("GET", f"/v1/jobs/{job_id}/result").json()

    def submit_and_wait(
        self, file: FileInput, *, timeout_s: float | None = None, **options: Any
    ) -> tuple[Job, dict[str, Any] | None]:
        """Upload, wait, and fetch the result of a succeeded job (None for a failed or canceled one)."""
        job = self.wait(self.submit_file(file, **options).id, timeout_s=timeout_s)
        return job, (self.result(job.id) if job.status == "succeeded" else None)

    # --- listing and managing ---------------------------------------------------------------------------------

    def list(self, *, status: str | None = None, cursor: str | None = None, limit: int = 50) -> JobPage:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        page = self._request("GET", "/v1/jobs", params=params).json()
        return JobPage([Job.from_document(item) for item in page["jobs"]], page.get("next_cursor"))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of the tenant, newest first, following the cursor."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, cursor=cursor, limit=page_size)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Cancel the job if it runs and erase its media, result and heatmaps; returns its final state."""
        return Job.from_document(self._request("DELETE", f"/v1/jobs/{job_id}").json())

    def deliveries(self, job_id: str) -> dict[str, Any]:
        """The webhook delivery log: {job_id, event_id, event_type, deliveries: [...]}."""
        return self._request("GET", f"/v1/jobs/{job_id}/deliveries").json()

    def redeliver(self, job_id: str) -> dict[str, Any]:
        """Queue one more delivery of the job's webhook."""
        return self._request("POST", f"/v1/jobs/{job_id}/deliveries/redeliver").json()

    def webhook_secret(self) -> str:
        """The secret to verify this tenant's webhooks with (`deepfake_client.verify_signature`)."""
        return str(self._request("GET", "/v1/webhooks/secret").json()["secret"])

    # --- transport ------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # GETs and DELETEs are idempotent; POSTs here carry an Idempotency-Key where it matters.
        retry = method in ("GET", "DELETE") or "Idempotency-Key" in (kwargs.get("headers") or {})
        return self._send(lambda: self._http.request(method, path, **kwargs), retry=retry)

    def _send(self, send: Callable[[], httpx.Response], *, retry: bool) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send()
            except httpx.TransportError:
                if not retry or attempt > self.max_retries:
                    raise
                time.sleep(_backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            error = ApiError.from_response(response)
            if retry and response.status_code in RETRY_STATUSES and attempt <= self.max_retries:
                time.sleep(error.retry_after_s if error.retry_after_s is not None else _backoff(attempt))
                continue
            raise error


def _backoff(attempt: int) -> float:
    return min(10.0, 0.5 * 2 ** (attempt - 1))


def _idempotency(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def _file_name(file: FileInput) -> str:
    if isinstance(file, str | os.PathLike):
        return Path(file).name
    return Path(getattr(file, "name", "") or "media").name


class _open:  # noqa: N801 - used like the builtin
    """Open a path for reading, or rewind a given file object (so that a retry sends it again)."""

    def __init__(self, file: FileInput) -> None:
        self._file = file
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if isinstance(self._file, str | os.PathLike):
            self._handle = open(self._file, "rb")  # noqa: SIM115 - closed in __exit__
            return self._handle
        if self._file.seekable():
            self._file.seek(0)
        return self._file

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.close()


def _chunks(handle: IO[bytes], size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def _json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"callback_url", "metadata", "priority", "sampling", "explain"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown job options: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})")
    return {name: value for name, value in options.items() if value is not None}


def _form_fields(options: Mapping[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in _json_options(options).items():
        if name == "metadata":
            fields[name] = json.dumps(value)
        elif isinstance(value, bool):
            fields[name] = "true" if value else "false"
        else:
            fields[name] = str(value)
    return fields

"""Turning a submission into a queued job: option checks, idempotency, admission, creation and dispatch.

Shared by REST (`rest/routes/jobs.py`) and gRPC (`grpc/server.py`). Everything here is synchronous
(Redis, object storage, DNS for the SSRF checks): async callers run it in a worker thread.

Order of work for one submission, cheapest refusal first:
  1. options (sampling, metadata size, callback URL vetted against the SSRF rules), media URL vetted;
  2. Idempotency-Key: a key already bound to this request answers with its job; to another request, 409;
  3. admission: backpressure (503) and the tenant's concurrent-job quota (429);
  4. the media (uploads: streamed into object storage by the caller, hashed on the way);
  5. the job record, then the Celery chain (deepfake_jobs.dispatch.submit_job, sent by task name).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from deepfake_core.errors import DetectionError
from deepfake_core.media.sampling import parse_sampling
from deepfake_jobs.dispatch import submit_job
from deepfake_jobs.models import (
    Job,
    JobError,
    JobOptions,
    JobStatus,
    MediaRef,
    MediaSourceKind,
    Priority,
    new_job_id,
)
from deepfake_jobs.safe_fetch import FetchError, FetchErrorCode, check_url_allowed
from deepfake_jobs.storage import ObjectTooLarge, StoredObject, upload_key
from deepfake_jobs.store import JobStore
from deepfake_jobs.store.errors import IdempotencyConflict, InvalidTransition, JobExists
from deepfake_jobs.tenants import Tenant

from deepfake_gateway.context import GatewayContext
from deepfake_gateway.problems import ProblemCode, ProblemError
from deepfake_gateway.ratelimit import Reservation

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 255
UPLOAD_RECORD_PREFIX = "deepfake:upload:"  # {tenant}:{upload id} -> {"filename", "content_type"}
_FETCH_PROBLEMS = {
    FetchErrorCode.INVALID_URL: ProblemCode.INVALID_URL,
    FetchErrorCode.URL_NOT_ALLOWED: ProblemCode.URL_NOT_ALLOWED,
    FetchErrorCode.FETCH_FAILED: ProblemCode.URL_UNRESOLVABLE,
}


@dataclass(frozen=True)
class Submitted:
    """The job answering a submission; `replayed` when an earlier identical request had created it."""

    job: Job
    replayed: bool = False


def new_upload_id() -> str:
    """Ids of presigned uploads are the ids of the jobs they become, so the media sits in the job's folder."""
    return uuid.uuid4().hex


def is_upload_id(value: str) -> bool:
    return len(value) == 32 and all(ch in "0123456789abcdef" for ch in value)


# --- options ------------------------------------------------------------------------------------------------------


def vet_url(url: str, ctx: GatewayContext, what: str) -> str:
    """`url` if the SSRF rules allow it (DNS is resolved now); a 422 problem naming `what` otherwise."""
    try:
        check_url_allowed(url, ctx.settings)
    except FetchError as error:
        code = _FETCH_PROBLEMS.get(error.code, ProblemCode.URL_NOT_ALLOWED)
        raise ProblemError(code, f"{what}: {error.message}") from error
    return url


def build_options(
    ctx: GatewayContext,
    *,
    callback_url: str | None = None,
    metadata: Any = None,
    priority: str | Priority | None = None,
    sampling: str | None = None,
    explain: bool | None = None,
) -> JobOptions:
    """Validated job options; each problem names the option and says how to fix it."""
    if sampling is not None and sampling.strip():
        try:
            sampling = str(parse_sampling(sampling))
        except DetectionError as error:
            raise ProblemError(ProblemCode.INVALID_SAMPLING, error.message) from error
    else:
        sampling = None
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise ProblemError(ProblemCode.VALIDATION_ERROR, "metadata must be a JSON object.")
    size = len(json.dumps(metadata, separators=(",", ":"), default=str).encode())
    if size > ctx.settings.max_metadata_bytes:
        raise ProblemError(
            ProblemCode.METADATA_TOO_LARGE,
            f"metadata is {size} bytes of JSON; the limit is {ctx.settings.max_metadata_bytes} bytes.",
        )
    try:
        priority_value = Priority(priority or Priority.NORMAL)
    except ValueError as error:
        allowed = ", ".join(p.value for p in Priority)
        raise ProblemError(ProblemCode.VALIDATION_ERROR, f"priority must be one of {allowed}.") from error
    if callback_url:
        vet_url(callback_url, ctx, "callback_url")
    return JobOptions(
        callback_url=callback_url or None,
        metadata=metadata,
        priority=priority_value,
        sampling=sampling,
        explain=True if explain is None else explain,
    )


def fingerprint(media: dict[str, Any], options: JobOptions) -> str:
    """What identifies a request for Idempotency-Key: the media (URL, upload id or content hash) and options."""
    canonical = json.dumps(
        {"media": media, "options": options.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise ProblemError(
            ProblemCode.VALIDATION_ERROR,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters (a UUID is typical).",
        )
    return key


# --- the submitter ------------------------------------------------------------------------------------------------


class Submitter:
    """Creates jobs for one tenant's requests; see the module docstring for the order of checks."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.store: JobStore = ctx.store

    # --- idempotency ---

    def key_is_bound(self, tenant: Tenant, key: str) -> bool:
        """Whether an Idempotency-Key was already used by this tenant (uploads then only hash the body)."""
        return self.store.idempotency_key_used(tenant.id, key)

    def claim(self, tenant: Tenant, key: str | None, request_hash: str, job_id: str) -> Job | None:
        """Bind `key` to `job_id`; None when this request now owns it, else the job an earlier request made."""
        if key is None:
            return None
        try:
            owner = self.store.claim_idempotency(tenant.id, key, request_hash, job_id)
        except IdempotencyConflict as error:
            raise ProblemError(ProblemCode.IDEMPOTENCY_CONFLICT, str(error)) from error
        if owner == job_id:
            return None
        existing = self.store.get(owner, tenant.id)
        if existing is None:
            raise ProblemError(
                ProblemCode.IDEMPOTENCY_IN_PROGRESS,
                f"The request with Idempotency-Key {key!r} is still being processed; retry in a second.",
                retry_after_s=1,
            )
        return existing

    # --- submissions ---

    def submit_url(self, tenant: Tenant, media_url: str, options: JobOptions, key: str | None) -> Submitted:
        vet_url(media_url, self.ctx, "media_url")
        job = Job(tenant_id=tenant.id, media=MediaRef(source=MediaSourceKind.URL, url=media_url), options=options)
        earlier = self.claim(tenant, key, fingerprint({"url": media_url}, options), job.id)
        if earlier is not None:
            return Submitted(earlier, replayed=True)
        return self._admit_and_create(tenant, job, key)

    def submit_presigned(self, tenant: Tenant, upload_id: str, options: JobOptions, key: str | None) -> Submitted:
        if not is_upload_id(upload_id):
            raise ProblemError(
                ProblemCode.UPLOAD_NOT_FOUND, f"{upload_id!r} is not an upload id from POST /v1/uploads."
            )
        earlier = self.claim(tenant, key, fingerprint({"upload_id": upload_id}, options), upload_id)
        if earlier is not None:
            return Submitted(earlier, replayed=True)
        existing = self.store.get(upload_id, tenant.id)
        if existing is not None:  # submitted before, without an Idempotency-Key
            if existing.options == options:
                return Submitted(existing, replayed=True)
            raise ProblemError(
                ProblemCode.UPLOAD_ALREADY_SUBMITTED,
                f"Upload {upload_id} was already submitted as job {existing.id} with other options; "
                "request a new upload to analyse the media again.",
            )
        record = self.upload_record(tenant, upload_id)
        key_name = upload_key(tenant.id, upload_id)
        info = self.ctx.objects.stat(key_name) if record is not None else None
        if info is None:
            self._release(tenant, key)
            raise ProblemError(
                ProblemCode.UPLOAD_NOT_FOUND,
                f"Nothing was uploaded for upload {upload_id} (or it expired); PUT the media to its upload_url first.",
            )
        try:
            self._check_size(info.size_bytes)
        except ProblemError:
            self._release(tenant, key)
            self.ctx.objects.delete(key_name)
            raise
        media = MediaRef(
            source=MediaSourceKind.PRESIGNED,
            object_key=key_name,
            filename=record.get("filename") or None,
            content_type=info.content_type or record.get("content_type"),
            size_bytes=info.size_bytes,
        )
        job = Job(id=upload_id, tenant_id=tenant.id, media=media, options=options)
        return self._admit_and_create(tenant, job, key)

    def register_upload(self, tenant: Tenant, filename: str | None, content_type: str) -> tuple[str, str, int]:
        """A new presigned upload: (upload id, PUT URL, lifetime in seconds); remembered for that long."""
        upload_id = new_upload_id()
        ttl = self.ctx.settings.upload_url_expiry_s
        url = self.ctx.objects.presigned_put(upload_key(tenant.id, upload_id), expires=timedelta(seconds=ttl))
        record = json.dumps({"filename": filename or "", "content_type": content_type})
        # Kept a while past the URL's expiry: a PUT that started just before it may finish after.
        self.store.redis.set(UPLOAD_RECORD_PREFIX + f"{tenant.id}:{upload_id}", record, ex=ttl + 3600)
        return upload_id, url, ttl

    def upload_record(self, tenant: Tenant, upload_id: str) -> dict[str, str] | None:
        raw = self.store.redis.get(UPLOAD_RECORD_PREFIX + f"{tenant.id}:{upload_id}")
        return json.loads(raw) if raw else None

    def begin_upload(self, tenant: Tenant) -> tuple[str, Reservation]:
        """Admission before an upload is streamed (never accept 500 MB only to refuse it); a new job id."""
        return new_job_id(), self.ctx.admit_job(tenant)

    def store_upload(self, job_id: str, tenant: Tenant, stream: Any, content_type: str | None) -> StoredObject:
        """Stream the body into object storage, hashing it; 413 past the size limit, 422 when empty."""
        key_name = upload_key(tenant.id, job_id)
        try:
            stored = self.ctx.objects.put_stream(
                key_name,
                stream,
                max_bytes=self.ctx.settings.max_media_bytes,
                content_type=content_type or "application/octet-stream",
            )
        except ObjectTooLarge as error:
            raise ProblemError(ProblemCode.MEDIA_TOO_LARGE, str(error)) from error
        if stored.size_bytes == 0:
            self.ctx.objects.delete(key_name)
            raise ProblemError(ProblemCode.EMPTY_MEDIA, "The uploaded file is empty; send the media's bytes.")
        return stored

    def finish_upload(
        self,
        tenant: Tenant,
        job_id: str,
        stored: StoredObject,
        options: JobOptions,
        key: str | None,
        reservation: Reservation,
        filename: str | None,
        content_type: str | None,
    ) -> Submitted:
        """Create the job for a stored upload (or answer the earlier job of the same idempotent request)."""
        media = MediaRef(
            source=MediaSourceKind.UPLOAD,
            object_key=stored.key,
            filename=filename,
            content_type=content_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
        )
        job = Job(id=job_id, tenant_id=tenant.id, media=media, options=options)
        try:
            self.ctx.confirm_job(tenant, reservation)  # the upload may have outlived its reservation
        except ProblemError:
            self.abandon_upload(tenant, job_id, reservation)
            raise
        try:
            earlier = self.claim(
                tenant, key, fingerprint({"sha256": stored.sha256, "filename": filename}, options), job.id
            )
        except ProblemError:
            self.ctx.quota.release(reservation)
            self.ctx.objects.delete(stored.key)
            raise
        if earlier is not None:  # a concurrent twin won the key: keep its job, drop this copy
            self.ctx.quota.release(reservation)
            self.ctx.objects.delete(stored.key)
            return Submitted(earlier, replayed=True)
        return self._create(tenant, job, key, reservation)

    def replay_upload(
        self, tenant: Tenant, key: str, sha256: str, filename: str | None, options: JobOptions
    ) -> Submitted:
        """An upload whose Idempotency-Key is already bound: the body was only hashed, never stored."""
        request_hash = fingerprint({"sha256": sha256, "filename": filename}, options)
        earlier = self.claim(tenant, key, request_hash, uuid.uuid4().hex)
        if earlier is None:  # the key expired meanwhile: this request now owns it but stored nothing
            self.store.release_idempotency(tenant.id, key)
            raise ProblemError(
                ProblemCode.IDEMPOTENCY_IN_PROGRESS, "The Idempotency-Key just expired; send the request again."
            )
        return Submitted(earlier, replayed=True)

    def abandon_upload(self, tenant: Tenant, job_id: str, reservation: Reservation) -> None:
        """Undo `begin_upload`/`store_upload` after a failure: the quota slot and any stored bytes."""
        self.ctx.quota.release(reservation)
        try:
            self.ctx.objects.delete(upload_key(tenant.id, job_id))
        except Exception:  # noqa: BLE001 - best effort; retention erases leftovers
            log.warning("could not delete the partial upload of job %s", job_id, exc_info=True)

    # --- creation ---

    def _admit_and_create(self, tenant: Tenant, job: Job, key: str | None) -> Submitted:
        try:
            reservation = self.ctx.admit_job(tenant)
        except ProblemError:
            self._release(tenant, key)
            raise
        return self._create(tenant, job, key, reservation)

    def _create(self, tenant: Tenant, job: Job, key: str | None, reservation: Reservation) -> Submitted:
        try:
            self.store.create(job)
        except JobExists as error:
            # Only presigned uploads choose their job id: a concurrent twin of this request created it.
            existing = self.store.get(job.id, tenant.id)
            if existing is not None and existing.options == job.options:
                return Submitted(existing, replayed=True)
            raise ProblemError(ProblemCode.UPLOAD_ALREADY_SUBMITTED, f"Job {job.id} already exists.") from error
        finally:
            self.ctx.quota.release(reservation)
        try:
            submit_job(job)
        except Exception as error:  # the broker is down: the job exists, so fail it visibly
            log.exception("could not queue job %s", job.id)
            try:
                job = self.store.update(
                    job.id,
                    status=JobStatus.FAILED,
                    error=JobError(code="queue_unavailable", message="The job could not be queued; submit it again."),
                )
            except InvalidTransition:
                pass
            raise ProblemError(
                ProblemCode.OVERLOADED,
                "The job queue is unavailable right now; retry shortly.",
                retry_after_s=self.ctx.settings.overload_retry_after_s,
            ) from error
        return Submitted(job)

    def _check_size(self, size: int) -> None:
        if size > self.ctx.settings.max_media_bytes:
            raise ProblemError(
                ProblemCode.MEDIA_TOO_LARGE,
                f"The upload is {size} bytes; the limit is {self.ctx.settings.max_media_bytes} bytes.",
            )
        if size == 0:
            raise ProblemError(ProblemCode.EMPTY_MEDIA, "The uploaded object is empty; PUT the media's bytes.")

    def _release(self, tenant: Tenant, key: str | None) -> None:
        if key is not None:
            self.store.release_idempotency(tenant.id, key)

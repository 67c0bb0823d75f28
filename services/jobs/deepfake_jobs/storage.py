"""Object storage on the S3 API (MinIO in production) and the one place that names object keys.

Key layout (one bucket, `settings.s3_bucket`):
  uploads/{tenant}/{job}/media        the media as received (upload, presigned PUT or fetched URL)
  jobs/{job}/prepared.bin             preprocess output (PreparedMedia.to_bytes())
  jobs/{job}/inference.bin            inference output (InferenceRun.to_bytes())
  jobs/{job}/job.json                 the Job record, written on every terminal transition (source of truth)
  results/{job}/result.json           the DetectionResult document
  results/{job}/heatmaps/{name}.png   Grad-CAM overlays referenced by the result
  audit/{yyyy}/{mm}/{dd}/{job}.json   append-only audit record of a finished job (never overwritten)
  inflight/{job}.json                 the record of an unfinished job (rebuilds Redis after a data loss)
  tenants/{tenant}.json               a tenant stored by the operator CLI (Redis is rebuilt from these)
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from deepfake_jobs.settings import PlatformSettings

PART_SIZE = 8 * 1024 * 1024  # multipart part size for streams of unknown length (S3 minimum is 5 MiB)
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"})


# --- key layout -------------------------------------------------------------------------------------------------


def upload_key(tenant_id: str, job_id: str) -> str:
    return f"uploads/{tenant_id}/{job_id}/media"


def upload_prefix(tenant_id: str, job_id: str) -> str:
    return f"uploads/{tenant_id}/{job_id}/"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def prepared_key(job_id: str) -> str:
    return f"jobs/{job_id}/prepared.bin"


def inference_key(job_id: str) -> str:
    return f"jobs/{job_id}/inference.bin"


def job_record_key(job_id: str) -> str:
    return f"jobs/{job_id}/job.json"


INFLIGHT_PREFIX = "inflight/"
JOBS_PREFIX = "jobs/"
UPLOADS_PREFIX = "uploads/"
RESULTS_PREFIX = "results/"
TENANTS_PREFIX = "tenants/"
JOB_RECORD_NAME = "job.json"


def tenant_record_key(tenant_id: str) -> str:
    return f"{TENANTS_PREFIX}{tenant_id}.json"


def inflight_key(job_id: str) -> str:
    """The record of an unfinished job, written when it is created and deleted when it finishes: what a
    Redis that lost its data is rebuilt from (`JobStore.recover`, the stalled-job sweep)."""
    return f"{INFLIGHT_PREFIX}{job_id}.json"


def result_prefix(job_id: str) -> str:
    return f"results/{job_id}/"


def result_key(job_id: str) -> str:
    return f"results/{job_id}/result.json"


def heatmap_key(job_id: str, name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return f"results/{job_id}/heatmaps/{safe if safe.endswith('.png') else safe + '.png'}"


def audit_key(finished_at: datetime, job_id: str) -> str:
    return f"audit/{finished_at:%Y}/{finished_at:%m}/{finished_at:%d}/{job_id}.json"


# --- errors and records -----------------------------------------------------------------------------------------


class ObjectTooLarge(Exception):
    """A stream went past its size limit; nothing was stored."""

    code = "media_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The media is larger than the limit of {limit} bytes; send a smaller file.")
        self.limit = limit


class ObjectExists(Exception):
    """An append-only object already exists and was not overwritten."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str | None
    etag: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size_bytes: int
    etag: str
    content_type: str | None
    last_modified: datetime | None
    metadata: dict[str, str]


class _HashingReader(io.RawIOBase):
    """Counts and hashes what minio reads, and stops past `limit` so an oversize upload never completes."""

    def __init__(self, source: BinaryIO, limit: int | None) -> None:
        self._source = source
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        if not chunk:
            return b""
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            raise ObjectTooLarge(self._limit)
        self.sha256.update(chunk)
        return chunk


# --- the store --------------------------------------------------------------------------------------------------


class ObjectStore:
    """Thin typed wrapper over the minio client; every method takes an object key of the layout above."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = _minio_client(settings, settings.s3_host, settings.s3_use_tls)
        # Presigned URLs are signed for the host the client will use; the region is set so presigning
        # needs no network call.
        self._public_client = _minio_client(settings, settings.s3_public_host, settings.s3_public_use_tls)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket, location=self.settings.s3_region)
            except S3Error as error:  # another process created it first
                if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def ready(self) -> bool:
        try:
            return self.client.bucket_exists(self.bucket)
        except Exception:  # noqa: BLE001 - readiness probes report, they do not raise
            return False

    # --- writing ---

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        max_bytes: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        """Upload a stream of unknown length (multipart); `ObjectTooLarge` past `max_bytes`, nothing kept."""
        reader = _HashingReader(stream, max_bytes)
        result = self.client.put_object(
            self.bucket, key, reader, length=-1, part_size=PART_SIZE, content_type=content_type, metadata=metadata
        )
        return StoredObject(key=key, size_bytes=reader.size, sha256=reader.sha256.hexdigest(), etag=result.etag)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        result = self.client.put_object(
            self.bucket, key, io.BytesIO(data), length=len(data), content_type=content_type, metadata=metadata
        )
        return StoredObject(key=key, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), etag=result.etag)

    def put_json(self, key: str, document: str | bytes) -> StoredObject:
        data = document.encode() if isinstance(document, str) else document
        return self.put_bytes(key, data, content_type="application/json")

    def put_new(self, key: str, data: bytes, *, content_type: str = "application/json") -> StoredObject:
        """Append-only write: `ObjectExists` if the key is taken (audit records are never overwritten)."""
        if self.exists(key):
            raise ObjectExists(key)
        return self.put_bytes(key, data, content_type=content_type)

    def copy(self, source_key: str, dest_key: str) -> None:
        self.client.copy_object(self.bucket, dest_key, CopySource(self.bucket, source_key))

    # --- reading ---

    def get_bytes(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stream(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        response = self.client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def download(self, key: str, dest: BinaryIO, chunk_size: int = 1024 * 1024) -> str:
        """Copy an object into a file object; returns its sha256 (computed while streaming)."""
        digest = hashlib.sha256()
        for chunk in self.stream(key, chunk_size):
            digest.update(chunk)
            dest.write(chunk)
        return digest.hexdigest()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            info = self.client.stat_object(self.bucket, key)
        except S3Error as error:
            if error.code in MISSING_CODES:
                return None
            raise
        return ObjectInfo(
            key=key,
            size_bytes=info.size or 0,
            etag=info.etag or "",
            content_type=info.content_type,
            last_modified=info.last_modified,
            metadata={k.lower(): v for k, v in (info.metadata or {}).items()},
        )

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def list_keys(self, prefix: str) -> Iterator[str]:
        for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            if item.object_name is not None:
                yield item.object_name

    def list_modified_before(self, prefix: str, cutoff: datetime) -> Iterator[str]:
        """Keys under `prefix` last written before `cutoff` (retention's scan of what Redis may have forgotten)."""
        for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            if item.object_name is not None and item.last_modified is not None and item.last_modified < cutoff:
                yield item.object_name

    # --- URLs for clients ---

    def presigned_get(self, key: str, expires: timedelta | None = None) -> str:
        expiry = expires or timedelta(seconds=self.settings.presigned_expiry_s)
        return self._public_client.presigned_get_object(self.bucket, key, expires=expiry)

    def presigned_put(self, key: str, expires: timedelta | None = None) -> str:
        """A URL the client PUTs the media to; it must send a real Content-Type (not form-urlencoded)."""
        expiry = expires or timedelta(seconds=self.settings.presigned_expiry_s)
        return self._public_client.presigned_put_object(self.bucket, key, expires=expiry)

    # --- erasing ---

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many were deleted."""
        if not prefix or not prefix.endswith("/"):
            raise ValueError(f"delete_prefix needs a folder prefix ending in '/', got {prefix!r}")
        keys = list(self.list_keys(prefix))
        errors = list(self.client.remove_objects(self.bucket, (DeleteObject(key) for key in keys)))
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects under {prefix}: {errors[0]}")
        return len(keys)


def _minio_client(settings: PlatformSettings, host: str, secure: bool) -> Minio:
    """A client of the bucket's S3 server reached at `host` (the internal or the public endpoint)."""
    return Minio(
        host,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=secure,
        region=settings.s3_region,
    )

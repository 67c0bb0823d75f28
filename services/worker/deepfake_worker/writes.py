"""A stage's writes into object storage: only while its job is live, and in the background where the stage can go on.

A job can be canceled or erased (`DELETE /v1/jobs/{id}`) at any moment while one of its stages runs. Every object a
stage writes goes through `guarded_write`: the job must exist and be unfinished just before the write, and if it
was canceled or erased while the object was being written, the object is deleted again (the erase may have listed
the job's folders before the write landed), so an erased job leaves nothing behind.

Writes that nothing waits for right away (a stage output kept for resume while the next stage already runs in the
same task, heatmap PNGs) go to a small per-process thread pool (`BackgroundWrites`); `wait()` collects them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all

from deepfake_jobs.storage import heatmap_key

from deepfake_worker.progress import JobCanceled
from deepfake_worker.services import services

log = logging.getLogger(__name__)

WRITE_THREADS = 4  # S3 round trips wait on the network, not the CPU: a few in flight hide their latency

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def write_pool() -> ThreadPoolExecutor:
    """This process's writer threads (created on first use, so after the pool's fork)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="s3-write")
        return _pool


def job_is_live(job_id: str) -> bool:
    """The job still exists and is unfinished (not canceled, erased, failed or succeeded)."""
    job = services().store.get(job_id)
    return job is not None and not job.terminal


def ensure_live(job_id: str, what: str) -> None:
    if not job_is_live(job_id):
        raise JobCanceled(f"job {job_id} was canceled or erased; {what} is not written")


def guarded_write(job_id: str, key: str, write: Callable[[], object]) -> None:
    """Run `write` (which stores `key`) only while the job is live; delete `key` again if it stopped meanwhile."""
    ensure_live(job_id, key)
    write()
    if not job_is_live(job_id):
        services().objects.delete(key)
        raise JobCanceled(f"job {job_id} was canceled or erased while {key} was written; deleted it again")


class BackgroundWrites:
    """Writes submitted to the process's writer threads; `wait()` blocks until all are done."""

    def __init__(self) -> None:
        self._futures: list[Future[None]] = []

    def submit(self, job_id: str, key: str, write: Callable[[], object]) -> None:
        self._futures.append(write_pool().submit(guarded_write, job_id, key, write))

    def wait(self) -> list[BaseException]:
        """Wait for every write submitted so far; the errors they raised, in submission order."""
        futures, self._futures = self._futures, []
        wait_all(futures)
        return [error for future in futures if (error := future.exception()) is not None]


class ObjectHeatmapWriter:
    """`HeatmapWriter` of the core pipeline: PNGs go to results/{job}/heatmaps/ while rendering goes on.

    `write()` returns the object key at once and uploads in the background; `flush()` waits for the uploads and
    raises the first failure (a canceled job as `JobCanceled`, an S3 error as itself, so the stage is retried).
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._writes = BackgroundWrites()

    def write(self, name: str, png: bytes) -> str:
        key = heatmap_key(self.job_id, name)
        objects = services().objects
        self._writes.submit(self.job_id, key, lambda: objects.put_bytes(key, png, content_type="image/png"))
        return key

    def flush(self) -> None:
        errors = self._writes.wait()
        canceled = [error for error in errors if isinstance(error, JobCanceled)]
        if canceled:
            raise canceled[0]
        if errors:
            raise errors[0]

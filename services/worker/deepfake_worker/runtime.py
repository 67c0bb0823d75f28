"""What kind of worker this process belongs to, and how each pool process uses the CPUs.

The main worker process records the queues its worker consumes and its pool size at `worker_init` (before the
prefork pool forks, so every pool process inherits them). From them come:

- the fast path (`consumes`): a stage runs the job's next stage in the same task when this worker consumes that
  stage's queue too, handing its output over in memory;
- the threads of each pool process (`cpu_threads`): onnxruntime's intra-op threads and OpenCV's threads default
  to the CPUs divided by the pool size, so N pool processes never start N x CPUs busy threads on a small machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from deepfake_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerRuntime:
    queues: frozenset[str]
    pool_size: int


_runtime: WorkerRuntime | None = None


def record(queues: Iterable[str], pool_size: int) -> WorkerRuntime:
    """Called in the main worker process before the pool forks."""
    global _runtime
    _runtime = WorkerRuntime(queues=frozenset(queues), pool_size=max(1, int(pool_size)))
    return _runtime


def current() -> WorkerRuntime | None:
    """None outside a worker (e.g. a task called directly in a test or a shell)."""
    return _runtime


def consumes(queue: str) -> bool:
    return _runtime is not None and queue in _runtime.queues


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_threads(settings: WorkerSettings) -> int:
    """Threads one pool process may keep busy: `cpu_threads_per_process`, else the CPUs shared by the pool."""
    if settings.cpu_threads_per_process:
        return settings.cpu_threads_per_process
    pool_size = _runtime.pool_size if _runtime is not None else 1
    return max(1, available_cpus() // pool_size)


def configure_process(settings: WorkerSettings) -> int:
    """Per pool process, after the fork: OpenCV's thread count and CPU priority; returns the thread budget.

    onnxruntime's threads are set where the session is opened (`deepfake_worker.inference.core_settings`).
    """
    threads = cpu_threads(settings)
    import cv2

    cv2.setNumThreads(threads)
    if settings.process_nice:
        os.nice(settings.process_nice)
    log.info("pool process %d: %d CPU thread(s), nice +%d", os.getpid(), threads, settings.process_nice)
    return threads

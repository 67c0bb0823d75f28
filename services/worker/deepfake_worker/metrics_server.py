"""The worker's /metrics: every pool process's metrics (prometheus_client multiprocess mode) and queue depths.

Started from Celery's `worker_init` signal, which fires in the main worker process only, so one server serves
the whole pool; PROMETHEUS_MULTIPROC_DIR must be set in the environment before the worker starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from deepfake_jobs.metrics import QueueDepthCollector, multiprocess_enabled, multiprocess_registry
from deepfake_jobs.store import JobStore
from prometheus_client import start_http_server

from deepfake_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def clear_multiprocess_dir() -> None:
    """Remove metric files left by a previous run (their counters would otherwise be added to ours)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def start_metrics_server(settings: WorkerSettings) -> int | None:
    """Serve /metrics on `settings.metrics_port`; returns the port, or None when disabled."""
    if not settings.metrics_port:
        return None
    if not multiprocess_enabled():
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: /metrics shows the main process only, not the pool")
    registry = multiprocess_registry()
    store = JobStore.from_settings(settings)
    registry.register(QueueDepthCollector(store, settings.queues))
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return settings.metrics_port


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess collector a pool process exited (its live gauges are dropped)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)

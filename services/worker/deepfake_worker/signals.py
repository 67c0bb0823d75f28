"""The worker's process signals: what the main process does before the pool forks, and each pool process after.

Connected when the worker imports this module (the Celery app `include`s it beside the tasks).
"""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from deepfake_jobs.storage import ObjectStore

from deepfake_worker import inference, runtime
from deepfake_worker.metrics_server import clear_multiprocess_dir, mark_process_dead, start_metrics_server
from deepfake_worker.settings import get_worker_settings


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Main worker process only (before the pool forks): bucket, fresh metric files, /metrics server, and what
    the pool processes need to know of their worker (its queues, its pool size)."""
    settings = get_worker_settings()
    ObjectStore(settings).ensure_bucket()
    clear_multiprocess_dir()
    start_metrics_server(settings)
    if sender is not None:
        queues = sender.app.amqp.queues
        consumed = queues.consume_from or queues
        pool_size = sender.concurrency if isinstance(sender.concurrency, int) else runtime.available_cpus()
        runtime.record(consumed.keys(), pool_size)


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    """Each pool process, after the fork: its CPU threads, and its models loaded before the first job asks."""
    settings = get_worker_settings()
    runtime.configure_process(settings)
    if settings.preload_models and any(runtime.consumes(queue) for queue in settings.pipeline_queues):
        inference.preload(with_analyzer=runtime.consumes(settings.queue_preprocess))


@worker_process_shutdown.connect
def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    inference.close_backend()
    mark_process_dead(pid or os.getpid())

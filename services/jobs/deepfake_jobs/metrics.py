"""Every Prometheus metric of the platform, defined once; the gateway and the workers import them from here.

Celery workers run several processes: they set PROMETHEUS_MULTIPROC_DIR (before prometheus_client is imported)
and serve `multiprocess_registry()`; the queue-depth gauge is read from Redis at scrape time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from deepfake_jobs.store import JobStore

log = logging.getLogger(__name__)

HTTP_REQUEST_DURATION = Histogram(
    "deepfake_http_request_duration_seconds",
    "Gateway HTTP request latency, by method, route template and status code.",
    ["method", "route", "status"],
)
JOBS_TOTAL = Counter(
    "deepfake_jobs_total",
    "Jobs that reached a terminal state, by state, media type and verdict.",
    ["state", "media_type", "verdict"],
)
STAGE_DURATION = Histogram(
    "deepfake_stage_duration_seconds",
    "Wall time of one pipeline stage execution (fetch, preprocess, inference, explain, notify).",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
INFERENCE_DURATION = Histogram(
    "deepfake_inference_duration_seconds",
    "Time of one model call (a batch of face sequences), by backend.",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFERENCE_BATCH_SIZE = Histogram(
    "deepfake_inference_batch_size",
    "Faces (sequences x frames) sent in one model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WEBHOOK_DELIVERIES = Counter(
    "deepfake_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, retrying, failed, refused).",
    ["outcome"],
)
STALLED_JOBS = Counter(
    "deepfake_stalled_jobs_total",
    "Jobs (or webhooks) found without progress for stall_after_s, by what the sweep did: resumed, failed, "
    "webhook_resent, recovered (rebuilt from object storage after Redis lost it).",
    ["action"],
)
CACHE_HITS = Counter(
    "deepfake_cache_hits_total",
    "Jobs answered from the result of identical media already analysed by the same model version.",
)

QUEUE_DEPTH_NAME = "deepfake_queue_depth"


class QueueDepthCollector(Collector):
    """`deepfake_queue_depth{queue}`: messages waiting in each Celery queue, read from Redis when scraped."""

    def __init__(self, store: JobStore, queues: Iterable[str]) -> None:
        self.store = store
        self.queues = tuple(queues)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(QUEUE_DEPTH_NAME, "Messages waiting in each Celery queue.", labels=["queue"])
        try:
            depths = self.store.queue_depths(self.queues)
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is away; the gap shows it
            log.warning("could not read queue depths from Redis", exc_info=True)
            return
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def multiprocess_registry() -> CollectorRegistry:
    """A registry aggregating every process's metric files (PROMETHEUS_MULTIPROC_DIR), or the default one."""
    if not multiprocess_enabled():
        from prometheus_client import REGISTRY

        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry

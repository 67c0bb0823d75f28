"""Stage progress into the job record (0-100 over the whole pipeline), throttled, and the cancel check.

A progress write is also the cancellation check: the store refuses any change to a finished job, so a
canceled job stops its running stage at the next progress report instead of running to the end.
"""

from __future__ import annotations

import time

from deepfake_jobs.models import Stage
from deepfake_jobs.store import JobStore
from deepfake_jobs.store.errors import InvalidTransition, JobNotFound

# Where each stage's progress span ends (it starts where the previous one ends: models.STAGE_PROGRESS_START).
STAGE_PROGRESS_END: dict[Stage, int] = {Stage.FETCH: 10, Stage.PREPROCESS: 60, Stage.INFERENCE: 85, Stage.EXPLAIN: 99}

# How the preprocess steps reported by deepfake_core.pipeline.prepare_media split the stage's span.
PREPROCESS_STEPS: dict[str, tuple[float, float]] = {"decode": (0.0, 0.2), "faces": (0.2, 1.0)}


class JobCanceled(Exception):
    """The job was canceled, erased (DELETE /v1/jobs/{id}) or otherwise finished while a stage ran; the stage
    stops and writes nothing more."""


class ProgressReporter:
    """Callable as `progress(step, fraction)` (the core's ProgressCallback); maps it into the stage's span."""

    def __init__(self, store: JobStore, job_id: str, stage: Stage, start: int, interval_s: float) -> None:
        self.store = store
        self.job_id = job_id
        self.start = start
        self.end = STAGE_PROGRESS_END[stage]
        self.interval_s = interval_s
        self._last_write = 0.0
        self._last_value = start

    def __call__(self, step: str, fraction: float) -> None:
        low, high = PREPROCESS_STEPS.get(step, (0.0, 1.0))
        overall = low + (high - low) * min(1.0, max(0.0, fraction))
        self.report(overall)

    def report(self, fraction: float, force: bool = False) -> None:
        value = int(self.start + (self.end - self.start) * min(1.0, max(0.0, fraction)))
        now = time.monotonic()
        if value <= self._last_value and not force:
            return
        if not force and now - self._last_write < self.interval_s:
            return
        try:
            self.store.modify(self.job_id, lambda job: {"progress": max(job.progress, value)})
        except (InvalidTransition, JobNotFound) as stop:
            raise JobCanceled(str(stop)) from stop
        self._last_write, self._last_value = now, value

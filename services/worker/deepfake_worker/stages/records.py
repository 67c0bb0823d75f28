"""A stage run in the job record: opening and closing it, failing the job, and what follows a finished job.

Every change is one atomic `JobStore.modify`; a job canceled or erased meanwhile makes them return None.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from deepfake_jobs.audit import write_audit_record
from deepfake_jobs.metrics import JOBS_TOTAL
from deepfake_jobs.models import STAGE_PROGRESS_START, Job, JobError, JobStatus, Stage, StageRun, utcnow
from deepfake_jobs.storage import inference_key, prepared_key
from deepfake_jobs.store.errors import InvalidTransition, JobNotFound

from deepfake_worker.progress import STAGE_PROGRESS_END
from deepfake_worker.services import services

log = logging.getLogger(__name__)


def start_stage(job_id: str, stage: Stage) -> Job | None:
    """Mark the job processing in `stage` and open a stage run; None if the job finished meanwhile."""

    def compute(job: Job) -> dict[str, Any]:
        return {
            "status": JobStatus.PROCESSING,
            "stage": stage,
            "progress": max(job.progress, STAGE_PROGRESS_START[stage]),
            "attempts": job.attempts + 1 if job.stage == stage else 1,
            "stage_runs": [*job.stage_runs, StageRun(stage=stage, started_at=utcnow())],
        }

    try:
        return services().store.modify(job_id, compute)
    except (InvalidTransition, JobNotFound):
        return None


def close_run(runs: list[StageRun], stage: Stage, started: float, reused: bool) -> list[StageRun]:
    """The stage runs with the last open run of `stage` given its duration (and reuse flag)."""
    closed = list(runs)
    for index in range(len(closed) - 1, -1, -1):
        if closed[index].stage == stage and closed[index].duration_ms is None:
            duration = round((time.perf_counter() - started) * 1000, 2)
            closed[index] = closed[index].model_copy(update={"duration_ms": duration, "reused": reused})
            break
    return closed


def finish_stage(
    job_id: str, stage: Stage, started: float, changes: dict[str, Any], *, reused: bool = False
) -> Job | None:
    """Close the stage run and apply `changes` atomically; None if the job finished meanwhile (canceled)."""

    def compute(job: Job) -> dict[str, Any]:
        update = {"stage_runs": close_run(job.stage_runs, stage, started, reused), **changes}
        if "progress" not in update:
            update["progress"] = max(job.progress, STAGE_PROGRESS_END.get(stage, job.progress))
        return update

    try:
        return services().store.modify(job_id, compute)
    except (InvalidTransition, JobNotFound):
        return None


def on_terminal(job: Job, media_type: str | None = None, score: float | None = None) -> None:
    """Once per finished job: metrics, the audit record, and dropping intermediate outputs (face crops)."""
    JOBS_TOTAL.labels(state=job.status.value, media_type=media_type or "unknown", verdict=job.verdict or "none").inc()
    try:
        write_audit_record(services().objects, job, media_type=media_type, score=score)
    except Exception:  # noqa: BLE001 - the job's outcome stands; a missing audit record is logged loudly
        log.exception("could not write the audit record of job %s", job.id)
    drop_intermediate_outputs(job.id)


def drop_intermediate_outputs(job_id: str) -> None:
    """Stage outputs hold face crops: keep them no longer than the job runs."""
    for key in (prepared_key(job_id), inference_key(job_id)):
        try:
            services().objects.delete(key)
        except Exception:  # noqa: BLE001 - leftovers are erased by retention
            log.warning("could not delete %s", key, exc_info=True)


def fail_job(job_id: str, stage: Stage, started: float, code: str, message: str) -> Job | None:
    """Fail the job in `stage` with a stable `code`; None if it had finished already."""
    job = finish_stage(
        job_id, stage, started, {"status": JobStatus.FAILED, "error": JobError(code=code, message=message)}
    )
    if job is not None:
        log.info("job %s failed in %s: %s: %s", job_id, stage.value, code, message)
        on_terminal(job)
    return job

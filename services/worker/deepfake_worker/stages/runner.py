"""Running one stage of one job, by the rules every stage follows.

Every stage takes the job id, returns it, and is idempotent: it does nothing for a finished (e.g. canceled)
or erased job, skips its work when its output object already exists (a retry or a re-driven chain resumes),
records each run in `Job.stage_runs`, and ends in one of three ways: done (the chain goes on), retried with
backoff (a transient S3/Redis/network/Triton error), or the job marked failed with a stable code (bad media,
refused URL, retries exhausted). A failed job still runs through the chain to `notify`, which sends its webhook.

A job canceled or erased (`DELETE /v1/jobs/{id}`) while one of its stages runs stops that stage quietly: every
write to object storage is guarded (`deepfake_worker.writes.guarded_write`: the job must still be live before it,
and an object written while the job was erased is deleted again), so an erased job leaves nothing behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_jobs.metrics import STAGE_DURATION
from deepfake_jobs.models import STAGE_PROGRESS_START, Job, JobError, JobStatus, Stage
from deepfake_jobs.safe_fetch import FetchError
from deepfake_jobs.storage import ObjectTooLarge
from deepfake_jobs.store.errors import InvalidTransition, JobNotFound

from deepfake_worker.errors import StageFailed, is_transient
from deepfake_worker.progress import JobCanceled, ProgressReporter
from deepfake_worker.services import services
from deepfake_worker.stages.handoff import Handoff
from deepfake_worker.stages.records import drop_intermediate_outputs, fail_job, finish_stage, on_terminal, start_stage
from deepfake_worker.stages.retries import retry_or_fail, wait_for_model

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What a stage's work changes in the job; a `status` in `changes` finishes the job."""

    changes: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    media_type: str | None = None
    score: float | None = None


StageWork = Callable[[Job, ProgressReporter, Handoff], StageResult]


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage: its work, and the object whose existence means the work is done (None: always run)."""

    stage: Stage
    work: StageWork
    output_key: Callable[[str], str] | None = None


def run_stage(task: Task, job_id: str, spec: StageSpec, handoff: Handoff | None = None) -> str:
    """Run one stage of one job with the rules of the module docstring; returns the job id for the chain."""
    svc = services()
    stage = spec.stage
    handoff = handoff or Handoff(job_id)
    started = time.perf_counter()
    try:
        job = svc.store.get(job_id)
        if job is None or job.terminal:
            log.info("job %s: %s skipped (%s)", job_id, stage.value, "erased" if job is None else job.status)
            if job is not None and job.status is JobStatus.CANCELED:
                drop_intermediate_outputs(job_id)
            return job_id
        if spec.output_key is not None and svc.objects.exists(spec.output_key(job_id)):
            start_stage(job_id, stage)
            finish_stage(job_id, stage, started, {}, reused=True)
            log.info("job %s: %s output exists, reused", job_id, stage.value)
            return job_id
        job = start_stage(job_id, stage)
        if job is None:
            return job_id
        reporter = ProgressReporter(
            svc.store, job_id, stage, STAGE_PROGRESS_START[stage], svc.settings.progress_interval_s
        )
        try:
            outcome = spec.work(job, reporter, handoff)
        except BaseException:
            handoff.settle()  # before a failed job drops its intermediate outputs, or a retry looks for them
            raise
        if "status" in outcome.changes:
            handoff.settle()  # the job ends: its intermediate outputs are dropped next
    except (JobCanceled, InvalidTransition, JobNotFound) as stop:
        log.info("job %s was canceled or erased while %s ran; stopped (%s)", job_id, stage.value, stop)
        drop_intermediate_outputs(job_id)
        return job_id
    except Retry:
        raise
    except SoftTimeLimitExceeded:
        fail_job(
            job_id,
            stage,
            started,
            "stage_timeout",
            f"The {stage.value} stage took longer than {svc.settings.job_soft_time_limit_s} s; "
            "try a shorter video or a sparser sampling.",
        )
        return job_id
    except StageFailed as error:
        fail_job(job_id, stage, started, error.code, error.message)
        return job_id
    except ObjectTooLarge as error:
        fail_job(job_id, stage, started, error.code, str(error))
        return job_id
    except DetectionError as error:
        # Media errors are final. An inference failure is the model server's (Triton down or overloaded), not the
        # media's, in whichever stage it comes: inference runs the model, and fetch, preprocess and explain read
        # its config (its identity, windows and input size) from the server on first use. The job waits for the
        # model server (see `wait_for_model`), one budget for the whole job: the inference stage's success ends it.
        if error.code is ErrorCode.INFERENCE_FAILED:
            return wait_for_model(task, job_id, stage, started, error)
        fail_job(job_id, stage, started, error.code.value, error.message)
        return job_id
    except FetchError as error:
        if error.transient:
            return retry_or_fail(task, job_id, stage, started, error.code.value, error.message, error)
        fail_job(job_id, stage, started, error.code.value, error.message)
        return job_id
    except Exception as error:
        if is_transient(error):
            message = f"storage or network kept failing ({type(error).__name__}: {error}); try again later"
            return retry_or_fail(task, job_id, stage, started, "service_unavailable", message, error)
        log.exception("job %s: unexpected error in %s", job_id, stage.value)
        fail_job(
            job_id,
            stage,
            started,
            "internal_error",
            f"The {stage.value} stage failed unexpectedly ({type(error).__name__}); the operators have the logs.",
        )
        return job_id
    finally:
        STAGE_DURATION.labels(stage=stage.value).observe(time.perf_counter() - started)
    finished = finish_stage(job_id, stage, started, outcome.changes, reused=outcome.reused)
    if finished is not None and finished.terminal:
        on_terminal(finished, outcome.media_type, outcome.score)
    return job_id


def fail_after_escape(job_id: str, error: BaseException) -> Job | None:
    """The last resort for a stage that died without marking its job: an error that escaped `run_stage`, or a
    stage killed at the hard time limit. Returns the failed job (its webhook is still owed), else None."""
    if is_transient(error):
        # Redis or storage went away while the stage handled an error (a broker restart): the job is not at
        # fault, and failing it would need the same Redis. The stalled-job sweep re-drives it.
        log.warning("job %s: a stage stopped on %r; the stalled-job sweep will re-drive it", job_id, error)
        return None
    if isinstance(error, TimeLimitExceeded):
        failure = JobError(
            code="stage_timeout",
            message=f"A stage was stopped at the hard time limit of {services().settings.job_time_limit_s} s; "
            "try a shorter video or a sparser sampling.",
        )
    else:
        failure = JobError(code="internal_error", message=f"The job stopped on an unexpected error ({error}).")
    try:
        job = services().store.update(job_id, status=JobStatus.FAILED, error=failure)
    except Exception:  # noqa: BLE001 - finished meanwhile, or the store is unreachable
        return None
    on_terminal(job)
    return job

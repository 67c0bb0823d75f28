"""The pipeline stages as Celery tasks: fetch -> preprocess -> inference -> explain -> notify, plus retention.

Every stage takes the job id, returns it, and is idempotent: it does nothing for a finished (e.g. canceled)
or erased job, skips its work when its output object already exists (a retry or a re-driven chain resumes),
records each run in `Job.stage_runs`, and ends in one of three ways: done (the chain goes on), retried with
backoff (a transient S3/Redis/network/Triton error), or the job marked failed with a stable code (bad media,
refused URL, retries exhausted). A failed job still runs through the chain to `notify`, which sends its webhook.

A job canceled or erased (`DELETE /v1/jobs/{id}`) while one of its stages runs stops that stage quietly: every
write to object storage is guarded (`deepfake_worker.writes.guarded_write`: the job must still be live before it,
and an object written while the job was erased is deleted again), so an erased job leaves nothing behind.

Fast path: when this worker also consumes the queue of the job's next stage, the task runs that stage itself
right away (`run_pipeline`), handing the output over in memory while still persisting it in the background, so
no stage waits for a queue hop or re-reads what the previous one just wrote. A retry or a redelivered message
re-runs the task's own stage first, which then resumes from whatever outputs were persisted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import urllib3
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.loader import resolve_sequence_length
from deepfake_core.pipeline import InferenceRun, PreparedMedia, build_result, prepare_media, run_inference
from deepfake_core.result import DetectionResult
from deepfake_jobs.audit import write_audit_record
from deepfake_jobs.dispatch import notify_job, resume_job
from deepfake_jobs.metrics import CACHE_HITS, JOBS_TOTAL, STAGE_DURATION
from deepfake_jobs.models import (
    STAGE_PROGRESS_START,
    WAITING_FOR_MODEL,
    DeliveryOutcome,
    Job,
    JobError,
    JobStatus,
    MediaRef,
    MediaSourceKind,
    Stage,
    StageRun,
    utcnow,
)
from deepfake_jobs.queues import (
    TASK_EXPLAIN,
    TASK_FETCH,
    TASK_INFERENCE,
    TASK_NOTIFY,
    TASK_PREPROCESS,
    TASK_RESUME_STALLED,
    TASK_RETENTION,
    task_routes,
)
from deepfake_jobs.retention import erase_expired
from deepfake_jobs.safe_fetch import FetchError, fetch_media
from deepfake_jobs.storage import (
    ObjectStore,
    ObjectTooLarge,
    inference_key,
    prepared_key,
    result_key,
    result_prefix,
    upload_key,
)
from deepfake_jobs.store import InvalidTransition, JobNotFound
from deepfake_jobs.webhooks import attempt_delivery, build_event
from minio.error import S3Error, ServerError

from deepfake_worker import inference, runtime
from deepfake_worker.cache import copy_result
from deepfake_worker.celery_app import app
from deepfake_worker.metrics_server import clear_multiprocess_dir, mark_process_dead, start_metrics_server
from deepfake_worker.progress import STAGE_PROGRESS_END, JobCanceled, ProgressReporter
from deepfake_worker.recovery import (
    STALLED_CODE,
    recover_after_data_loss,
    recover_lost_jobs,
    stalled_message,
    sweep_stalled,
    sweep_webhooks,
)
from deepfake_worker.services import Services, services
from deepfake_worker.settings import get_worker_settings
from deepfake_worker.writes import BackgroundWrites, ObjectHeatmapWriter, ensure_live, guarded_write, job_is_live

log = logging.getLogger(__name__)

# Errors of the infrastructure, not of the job: worth another try after a pause.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    urllib3.exceptions.HTTPError,
    ServerError,
    ConnectionError,
    TimeoutError,
)
TRANSIENT_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})


class StageFailed(Exception):
    """The job cannot go on, for a reason the client can act on (`code` is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class StageResult:
    """What a stage's work changes in the job; a `status` in `changes` finishes the job."""

    changes: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    media_type: str | None = None
    score: float | None = None


@dataclass
class Handoff:
    """What the stages a task ran so far produced for one job, for the next stage run in the same task.

    `in_memory` is set when the next stage will run here: a stage then hands its output over in memory and
    persists it in the background (for a retry or another worker to resume from); otherwise it persists it
    before the stage ends, because another process will read it.
    """

    job_id: str
    in_memory: bool = False
    prepared: PreparedMedia | None = None
    run: InferenceRun | None = None
    writes: BackgroundWrites = field(default_factory=BackgroundWrites)
    pending: dict[str, Callable[[], None]] = field(default_factory=dict)  # key -> its write, until settled

    def persist(self, key: str, produce: Callable[[], bytes]) -> None:
        """Store a stage output (`produce` serialises it), in the background when the next stage runs here."""
        objects = services().objects

        def write() -> None:
            objects.put_bytes(key, produce())

        if self.in_memory:
            self.pending[key] = write
            self.writes.submit(self.job_id, key, write)
        else:
            guarded_write(self.job_id, key, write)

    def settle(self, required: bool = False) -> None:
        """Wait for the background writes. A failed one only takes a resume's shortcut away, so it is logged;
        with `required` (another task reads the output next) it is written again here, and its error raised."""
        errors = [error for error in self.writes.wait() if not isinstance(error, JobCanceled)]
        pending, self.pending = self.pending, {}
        if errors and required:
            for key, write in pending.items():
                if not services().objects.exists(key):
                    guarded_write(self.job_id, key, write)
            return
        for error in errors:
            log.warning("job %s: a stage output was not persisted (%s); a retry recomputes it", self.job_id, error)


# --- running a stage --------------------------------------------------------------------------------------------


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, S3Error):
        return error.code in TRANSIENT_S3_CODES
    if isinstance(error, FetchError):
        return error.transient
    return isinstance(error, TRANSIENT_ERRORS)


def _close_run(runs: list[StageRun], stage: Stage, started: float, reused: bool) -> list[StageRun]:
    """The stage runs with the last open run of `stage` given its duration (and reuse flag)."""
    closed = list(runs)
    for index in range(len(closed) - 1, -1, -1):
        if closed[index].stage == stage and closed[index].duration_ms is None:
            duration = round((time.perf_counter() - started) * 1000, 2)
            closed[index] = closed[index].model_copy(update={"duration_ms": duration, "reused": reused})
            break
    return closed


def _finish(job_id: str, stage: Stage, started: float, changes: dict[str, Any], *, reused: bool = False) -> Job | None:
    """Close the stage run and apply `changes` atomically; None if the job finished meanwhile (canceled)."""
    svc = services()

    def compute(job: Job) -> dict[str, Any]:
        update = {"stage_runs": _close_run(job.stage_runs, stage, started, reused), **changes}
        if "progress" not in update:
            update["progress"] = max(job.progress, STAGE_PROGRESS_END.get(stage, job.progress))
        return update

    try:
        return svc.store.modify(job_id, compute)
    except (InvalidTransition, JobNotFound):
        return None


def _on_terminal(job: Job, media_type: str | None = None, score: float | None = None) -> None:
    """Once per finished job: metrics, the audit record, and dropping intermediate outputs (face crops)."""
    svc = services()
    JOBS_TOTAL.labels(state=job.status.value, media_type=media_type or "unknown", verdict=job.verdict or "none").inc()
    try:
        write_audit_record(svc.objects, job, media_type=media_type, score=score)
    except Exception:  # noqa: BLE001 - the job's outcome stands; a missing audit record is logged loudly
        log.exception("could not write the audit record of job %s", job.id)
    _drop_intermediate_outputs(job.id)


def _drop_intermediate_outputs(job_id: str) -> None:
    """Stage outputs hold face crops: keep them no longer than the job runs."""
    for key in (prepared_key(job_id), inference_key(job_id)):
        try:
            services().objects.delete(key)
        except Exception:  # noqa: BLE001 - leftovers are erased by retention
            log.warning("could not delete %s", key, exc_info=True)


def fail_job(job_id: str, stage: Stage, started: float, code: str, message: str) -> Job | None:
    job = _finish(job_id, stage, started, {"status": JobStatus.FAILED, "error": JobError(code=code, message=message)})
    if job is not None:
        log.info("job %s failed in %s: %s: %s", job_id, stage.value, code, message)
        _on_terminal(job)
    return job


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
                _drop_intermediate_outputs(job_id)
            return job_id
        if spec.output_key is not None and svc.objects.exists(spec.output_key(job_id)):
            _start(job_id, stage)
            _finish(job_id, stage, started, {}, reused=True)
            log.info("job %s: %s output exists, reused", job_id, stage.value)
            return job_id
        job = _start(job_id, stage)
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
        _drop_intermediate_outputs(job_id)
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
        # Media errors are final. An inference failure in the inference stage is the backend's (Triton down or
        # overloaded), not the media's: the job waits for the model server (see `_wait_for_model`).
        if stage is Stage.INFERENCE and error.code is ErrorCode.INFERENCE_FAILED:
            return _wait_for_model(task, job_id, started, error)
        fail_job(job_id, stage, started, error.code.value, error.message)
        return job_id
    except FetchError as error:
        if error.transient:
            return _retry_or_fail(task, job_id, stage, started, error.code.value, error.message, error)
        fail_job(job_id, stage, started, error.code.value, error.message)
        return job_id
    except Exception as error:
        if _is_transient(error):
            message = f"storage or network kept failing ({type(error).__name__}: {error}); try again later"
            return _retry_or_fail(task, job_id, stage, started, "service_unavailable", message, error)
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
    finished = _finish(job_id, stage, started, outcome.changes, reused=outcome.reused)
    if finished is not None and finished.terminal:
        _on_terminal(finished, outcome.media_type, outcome.score)
    return job_id


def _start(job_id: str, stage: Stage) -> Job | None:
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


def _retry_or_fail(
    task: Task, job_id: str, stage: Stage, started: float, code: str, message: str, error: BaseException
) -> str:
    settings = services().settings
    retries = task.request.retries
    if retries < settings.task_max_retries:
        try:
            _finish(job_id, stage, started, {})
        except TRANSIENT_ERRORS as unrecorded:  # Redis itself is what failed: the retry matters, not the record
            log.warning("job %s: could not close the %s run before its retry: %r", job_id, stage.value, unrecorded)
        countdown = settings.task_retry_backoff_s * 2**retries
        log.warning("job %s: %s retry %d in %.1f s after %s", job_id, stage.value, retries + 1, countdown, error)
        raise task.retry(exc=error, countdown=countdown, max_retries=settings.task_max_retries)
    fail_job(job_id, stage, started, code, f"{message} (after {retries + 1} attempts)")
    return job_id


def _wait_for_model(task: Task, job_id: str, started: float, error: DetectionError) -> str:
    """Retry the inference stage until the model server answers again, for up to `model_wait_s` in all.

    A restart, a node drain or a rollout of the model server can outlast any count of exponential retries (they
    gave up after about 80 s), so the budget is time, counted from the job's first failure (`waiting_since`);
    meanwhile the job shows `progress_stage=waiting_for_model`. Past the budget it fails with the documented
    `service_unavailable`.
    """
    svc = services()
    settings = svc.settings
    job = svc.store.get(job_id)
    now = utcnow()
    since = job.waiting_since if job is not None and job.waiting_since is not None else now
    waited = (now - since).total_seconds()
    left = settings.model_wait_s - waited
    if left > 0:
        _finish(job_id, Stage.INFERENCE, started, {"progress_stage": WAITING_FOR_MODEL, "waiting_since": since})
        retries = task.request.retries
        countdown = min(settings.task_retry_backoff_s * 2 ** min(retries, 16), settings.model_wait_retry_max_s, left)
        log.warning("job %s: model server unavailable for %.0f s, next try in %.1f s: %s", job_id, waited,
                    countdown, error)  # fmt: skip
        raise task.retry(exc=error, countdown=max(countdown, 0.1), max_retries=retries + 1)
    fail_job(
        job_id,
        Stage.INFERENCE,
        started,
        "service_unavailable",
        f"The model server did not answer for {waited:.0f} s ({error.message}); submit the job again later.",
    )
    return job_id


# --- the stages' work -------------------------------------------------------------------------------------------


def _hash_object(objects: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in objects.stream(key):
        digest.update(chunk)
    return digest.hexdigest()


def _fetch_url(job: Job, key: str, svc: Services) -> MediaRef:
    if not job.media.url:
        raise StageFailed("media_missing", "The job's media source is 'url' but it has no URL; submit it again.")
    with tempfile.TemporaryFile(prefix="deepfake-fetch-") as spool:
        fetched = fetch_media(job.media.url, svc.settings, spool)
        spool.seek(0)
        content_type = fetched.content_type or "application/octet-stream"
        limit = svc.settings.max_media_bytes
        guarded_write(
            job.id, key, lambda: svc.objects.put_stream(key, spool, max_bytes=limit, content_type=content_type)
        )
    return job.media.model_copy(
        update={
            "object_key": key,
            "size_bytes": fetched.size_bytes,
            "sha256": fetched.sha256,
            "content_type": job.media.content_type or fetched.content_type,
            "filename": job.media.filename or fetched.filename,
        }
    )


def fetch_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Media into object storage with its sha256; then answer from the result cache if the media is known."""
    svc = services()
    is_url = job.media.source is MediaSourceKind.URL
    key = upload_key(job.tenant_id, job.id) if is_url else job.media.object_key
    if not key:
        raise StageFailed("media_missing", "The job has no media; submit it again with a file or a URL.")
    info = svc.objects.stat(key)
    reused = info is not None and job.media.sha256 is not None and job.media.object_key == key
    if reused:
        media = job.media
    elif is_url and info is None:
        media = _fetch_url(job, key, svc)
    else:
        if info is None:
            raise StageFailed(
                "media_missing", "No media was uploaded for this job; PUT the file to the upload URL, then confirm."
            )
        if info.size_bytes > svc.settings.max_media_bytes:
            limit = svc.settings.max_media_bytes
            raise StageFailed("media_too_large", f"The media has {info.size_bytes} bytes; the limit is {limit}.")
        media = job.media.model_copy(
            update={
                "object_key": key,
                "size_bytes": info.size_bytes,
                "sha256": job.media.sha256 or _hash_object(svc.objects, key),
                "content_type": job.media.content_type or info.content_type,
            }
        )
    reporter.report(1.0, force=True)
    cached = _from_cache(job, media, svc) if svc.settings.result_cache else None
    if cached is not None:
        return cached
    return StageResult(changes={"media": media}, reused=reused)


def _from_cache(job: Job, media: MediaRef, svc: Services) -> StageResult | None:
    """Finish the job from an earlier job's result (same tenant, media, model and options), if one exists."""
    assert media.sha256 is not None
    identity, variant = inference.model_identity(), inference.result_variant(job.options)
    source_id = svc.store.cached_result(job.tenant_id, media.sha256, identity, variant)
    if source_id is None or source_id == job.id:
        return None
    ensure_live(job.id, "the cached result")
    result = copy_result(svc.objects, source_id, job.id)
    if not job_is_live(job.id):  # canceled or erased while the copies were made: take them back
        svc.objects.delete_prefix(result_prefix(job.id))
        raise JobCanceled(f"job {job.id} was canceled or erased while its cached result was copied")
    if result is None:  # the earlier job was erased: forget it
        svc.store.forget_result(job.tenant_id, media.sha256, identity, variant)
        return None
    CACHE_HITS.inc()
    log.info("job %s answered from the result of job %s (same media sha256)", job.id, source_id)
    return StageResult(
        changes={
            "media": media,
            "status": JobStatus.SUCCEEDED,
            "result_key": result_key(job.id),
            "verdict": result.verdict.value,
            "model_version": result.model.version,
            "cache_hit": True,
            "progress": 100,
        },
        media_type=result.media.type.value,
        score=result.score,
    )


def preprocess_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Decode, sample, find and align faces (deepfake_core.pipeline.prepare_media); store the prepared media."""
    svc = services()
    assert job.media.object_key is not None
    suffix = Path(job.media.filename or "").suffix[:10]
    with tempfile.NamedTemporaryFile(prefix="deepfake-media-", suffix=suffix) as local:
        svc.objects.download(job.media.object_key, local)
        local.flush()
        prepared = prepare_media(
            Path(local.name),
            inference.core_settings(),
            job.options.sampling,
            inference.get_analyzer(),
            reporter,
            metadata=inference.get_backend().metadata,  # its windows: the length and spacing it was trained on
        )
    handoff.prepared = prepared
    handoff.persist(prepared_key(job.id), prepared.to_bytes)
    return StageResult()


def _prepared(job_id: str, handoff: Handoff) -> PreparedMedia:
    """The preprocess output: handed over in memory by this task, else read back from object storage."""
    if handoff.prepared is None:
        handoff.prepared = PreparedMedia.from_bytes(services().objects.get_bytes(prepared_key(job_id)))
    return handoff.prepared


def _inference_run(job_id: str, handoff: Handoff) -> InferenceRun:
    if handoff.run is None:
        handoff.run = InferenceRun.from_bytes(services().objects.get_bytes(inference_key(job_id)))
    return handoff.run


def inference_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Run the model over every face track (onnxruntime in-process, or Triton); store the raw outputs."""
    prepared = _prepared(job.id, handoff)
    backend = inference.get_backend()
    run = run_inference(prepared, backend, resolve_sequence_length(inference.core_settings(), backend.metadata))
    handoff.run = run
    handoff.persist(inference_key(job.id), run.to_bytes)
    changes = {"model_version": backend.metadata.version, "progress_stage": None, "waiting_since": None}
    return StageResult(changes=changes)


def explain_work(job: Job, reporter: ProgressReporter, handoff: Handoff) -> StageResult:
    """Scores, verdict and Grad-CAM heatmaps into the result document; index it for the result cache."""
    svc = services()
    key = result_key(job.id)
    reused = svc.objects.exists(key)
    if reused:  # persisted by a run that died before marking the job: finish from it
        result = DetectionResult.model_validate_json(svc.objects.get_bytes(key))
    else:
        prepared, run = _prepared(job.id, handoff), _inference_run(job.id, handoff)
        backend = inference.get_backend()
        writer = ObjectHeatmapWriter(job.id) if job.options.explain else None
        result = build_result(
            prepared,
            run,
            backend.metadata,
            inference.core_settings(),
            writer,
            job.options.explain,
            model_sha256=backend.sha256,
        )
        if writer is not None:
            writer.flush()  # every heatmap the result refers to is stored before the result is
        document = result.model_dump_json()
        guarded_write(job.id, key, lambda: svc.objects.put_json(key, document))
    if svc.settings.result_cache and job.media.sha256:
        svc.store.remember_result(
            job.tenant_id, job.media.sha256, inference.model_identity(), inference.result_variant(job.options), job.id
        )
    return StageResult(
        changes={
            "status": JobStatus.SUCCEEDED,
            "result_key": key,
            "verdict": result.verdict.value,
            "model_version": result.model.version,
            "progress": 100,
        },
        reused=reused,
        media_type=result.media.type.value,
        score=result.score,
    )


# --- tasks ------------------------------------------------------------------------------------------------------


class PipelineTask(Task):
    """Base of the stage tasks: the last resort for a stage that died without marking its job.

    Celery calls `on_failure` for an error that escaped `run_stage` (in the pool process) and for a stage killed
    at the hard time limit (in the main process, after the kill); the job is failed and its webhook sent.
    """

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        job_id = args[0] if args else None
        if not isinstance(job_id, str):
            return
        if _is_transient(exc):
            # Redis or storage went away while the stage handled an error (a broker restart): the job is not at
            # fault, and failing it would need the same Redis. The stalled-job sweep re-drives it.
            log.warning("job %s: a stage stopped on %r; the stalled-job sweep will re-drive it", job_id, exc)
            return
        if isinstance(exc, TimeLimitExceeded):
            error = JobError(
                code="stage_timeout",
                message=f"A stage was stopped at the hard time limit of {services().settings.job_time_limit_s} s; "
                "try a shorter video or a sparser sampling.",
            )
        else:
            error = JobError(code="internal_error", message=f"The job stopped on an unexpected error ({exc}).")
        try:
            job = services().store.update(job_id, status=JobStatus.FAILED, error=error)
        except Exception:  # noqa: BLE001 - finished meanwhile, or the store is unreachable
            return
        _on_terminal(job)
        notify_job(job)


STAGES: dict[str, StageSpec] = {
    TASK_FETCH: StageSpec(Stage.FETCH, fetch_work),
    TASK_PREPROCESS: StageSpec(Stage.PREPROCESS, preprocess_work, prepared_key),
    TASK_INFERENCE: StageSpec(Stage.INFERENCE, inference_work, inference_key),
    TASK_EXPLAIN: StageSpec(Stage.EXPLAIN, explain_work),
}


def _inline_budget_left(started: float) -> bool:
    """Whether a task begun at `started` (monotonic) may run one more stage: the soft time limit covers all the
    stages a task runs, so once half of it is used the next stage goes to a task of its own, with a fresh limit."""
    return time.monotonic() - started < services().settings.job_soft_time_limit_s / 2


def _inline_step(task: Task, job_id: str, depth: int) -> str | None:
    """The task name of the chain step `depth` places ahead, if this worker may run it inline, else None.

    Only pipeline stages of the same job qualify, and only when this worker consumes the queue the step was sent
    to (a deployment with one pool per queue keeps one task per stage).
    """
    settings = services().settings
    chain = task.request.chain or []
    if not settings.inline_stages or depth > len(chain):
        return None
    step = chain[-depth]
    name = step.get("task")
    if name not in STAGES or list(step.get("args") or ()) != [job_id] or step.get("kwargs"):
        return None
    queue = (step.get("options") or {}).get("queue") or task_routes(settings)[name]["queue"]
    return name if runtime.consumes(queue) else None


def run_pipeline(task: Task, job_id: str, name: str) -> str:
    """Run the task's stage, then each following stage of the chain this worker consumes (the fast path).

    The steps run inline are taken off the chain only once all of them succeeded; if one is retried, the retry
    carries the whole chain, starts again at this task's stage and resumes from the persisted outputs.
    """
    handoff = Handoff(job_id)
    ran_inline = 0
    started = time.monotonic()
    try:
        current: str | None = name
        while current is not None:
            following = _inline_step(task, job_id, ran_inline + 1) if _inline_budget_left(started) else None
            handoff.in_memory = following is not None
            run_stage(task, job_id, STAGES[current], handoff)
            if following is None:
                break
            if not _inline_budget_left(started):  # the chain sends the next stage: its input must be stored
                handoff.settle(required=True)
                break
            ran_inline += 1
            log.info("job %s: %s runs right here after %s (fast path)", job_id, following, current)
            current = following
    finally:
        handoff.settle()
    if ran_inline:
        del task.request.chain[-ran_inline:]  # Celery sends what is left of the chain
    return job_id


@app.task(bind=True, base=PipelineTask, name=TASK_FETCH)
def fetch(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_FETCH)


@app.task(bind=True, base=PipelineTask, name=TASK_PREPROCESS)
def preprocess(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_PREPROCESS)


@app.task(bind=True, base=PipelineTask, name=TASK_INFERENCE)
def infer(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_INFERENCE)


@app.task(bind=True, base=PipelineTask, name=TASK_EXPLAIN)
def explain(self: Task, job_id: str) -> str:
    return run_pipeline(self, job_id, TASK_EXPLAIN)


@app.task(bind=True, name=TASK_NOTIFY, max_retries=None)
def notify(self: Task, job_id: str, manual: bool = False) -> str:
    """Send the finished job's signed webhook; retried with backoff (on this queue) until the retry period ends.

    The retry budget is time (`webhook_retry_period_s`, decided by `attempt_delivery`), never a count: the task's
    `max_retries=None` is what makes Celery retry without limit (`self.retry(max_retries=None)` alone means "the
    task's default", 3, which gave up after 4 attempts while the delivery log still said `retrying`).
    """
    svc = services()
    started = time.perf_counter()
    try:
        job = svc.store.get(job_id)
        if job is None or job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED) or not job.options.callback_url:
            return job_id
        event = svc.store.save_event(build_event(job))
        if not manual and any(a.outcome is DeliveryOutcome.DELIVERED for a in svc.store.deliveries(job_id)):
            return job_id  # a duplicate message: the event was already delivered
        attempt = attempt_delivery(
            svc.store, svc.settings, event, job.tenant_id, retry=not manual, secret_for=svc.webhook_secret
        )
    finally:
        STAGE_DURATION.labels(stage=Stage.NOTIFY.value).observe(time.perf_counter() - started)
    if attempt.outcome is DeliveryOutcome.RETRYING and attempt.next_retry_at is not None:
        countdown = max(0.0, (attempt.next_retry_at - utcnow()).total_seconds())
        raise self.retry(countdown=countdown, max_retries=None)
    return job_id


@app.task(name=TASK_RETENTION)
def retention(now: str | None = None) -> dict[str, Any]:
    """Erase jobs (media, outputs, results, records) created more than `retention_days` ago."""
    svc = services()
    moment = datetime.fromisoformat(now) if now else None
    report = erase_expired(svc.store, svc.objects, svc.settings.retention_days, now=moment)
    return {"cutoff": report.cutoff.isoformat(), "jobs_erased": report.jobs_erased, "objects": report.objects_deleted}


@app.task(name=TASK_RESUME_STALLED)
def resume_stalled(now: str | None = None) -> dict[str, list[str]]:
    """Re-drive unfinished jobs that stopped progressing and resend overdue webhooks (lost broker messages);
    see deepfake_worker.recovery."""
    svc = services()

    def give_up(job: Job) -> None:
        failed = fail_job(job.id, job.stage or Stage.FETCH, time.perf_counter(), STALLED_CODE,
                          stalled_message(svc.settings))  # fmt: skip
        if failed is not None:
            notify_job(failed)

    moment = datetime.fromisoformat(now) if now else None
    rebuilt = recover_after_data_loss(svc.store, svc.tenants)  # Redis started empty: tenants, finished jobs
    recovered = recover_lost_jobs(svc.store)  # after a Redis data loss; the stalled rule then re-drives them
    if rebuilt is not None:
        recovered = sorted({*recovered, *rebuilt.unfinished_jobs, *rebuilt.finished_jobs})
    # Webhooks before jobs: a job given up on below has its notify on the way and must not count as overdue yet.
    resent = sweep_webhooks(svc.store, svc.settings, resend=notify_job, now=moment)
    report = sweep_stalled(svc.store, svc.settings, resume=resume_job, give_up=give_up, now=moment)
    return {"recovered": recovered, "resumed": report.resumed, "failed": report.failed,
            "deferred": report.deferred, "webhooks": resent}  # fmt: skip


# --- worker lifecycle -------------------------------------------------------------------------------------------


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
